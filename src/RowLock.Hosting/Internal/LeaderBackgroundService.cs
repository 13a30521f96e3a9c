using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace RowLock.Hosting.Internal;

/// <summary>
/// Runs <typeparamref name="TWorker"/> only while this instance leads: acquire, run the worker with a token cancelled on
/// loss or stop, wait for it to return, resign (or clean up after a loss), and join the election again. The worker's task
/// is always awaited before the next attempt, so two leaderships never overlap inside one process.
/// </summary>
internal sealed class LeaderBackgroundService<TWorker> : BackgroundService
    where TWorker : class, ILeaderWorker
{
    private readonly LeaderElection _election;
    private readonly IServiceScopeFactory _scopes;
    private readonly ILogger _logger;
    private readonly TimeSpan _retryDelay;

    public LeaderBackgroundService(LeaderElection election, IServiceScopeFactory scopes, ILogger logger, TimeSpan retryDelay)
    {
        _election = election;
        _scopes = scopes;
        _logger = logger;
        _retryDelay = retryDelay;
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        await Task.Yield();
        while (!stoppingToken.IsCancellationRequested)
        {
            Leadership leadership;
            try
            {
                leadership = await _election.AcquireAsync(stoppingToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }

            var pause = false;
            await using (leadership.ConfigureAwait(false))
            {
                using var linked = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken, leadership.Lost);
                try
                {
                    var scope = _scopes.CreateAsyncScope();
                    await using (scope.ConfigureAwait(false))
                    {
                        var worker = scope.ServiceProvider.GetRequiredService<TWorker>();
                        await worker.RunAsync(leadership, linked.Token).ConfigureAwait(false);
                    }

                    if (!linked.IsCancellationRequested)
                    {
                        LeaderLog.WorkerReturned(_logger, leadership.Name, leadership.Epoch);
                        pause = true;
                    }
                }
                catch (OperationCanceledException) when (linked.IsCancellationRequested)
                {
                    // Lost or stopping: the worker did what it was asked.
                }
                catch (Exception e) when (e is not OperationCanceledException || !linked.IsCancellationRequested)
                {
                    LeaderLog.WorkerFailed(_logger, leadership.Name, leadership.Epoch, e);
                    pause = true;
                }
            }

            if (pause || !stoppingToken.IsCancellationRequested)
            {
                try
                {
                    // After a loss, give the new leader room; after a failure or return, let leadership move (wolverine#2723's flapping).
                    await Task.Delay(_retryDelay, stoppingToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
                {
                    return;
                }
            }
        }
    }
}
