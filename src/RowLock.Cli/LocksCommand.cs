using System.Globalization;
using Npgsql;
using Spectre.Console.Cli;

namespace RowLock.Cli;

/// <summary><c>rowlock locks</c>: the blocking tree now, or refreshed with <c>--watch</c>.</summary>
internal sealed class LocksCommand : AsyncCommand<LocksSettings>
{
    public override async Task<int> ExecuteAsync(CommandContext context, LocksSettings settings, CancellationToken cancellationToken)
    {
        NpgsqlDataSource dataSource;
        try
        {
            var builder = new NpgsqlConnectionStringBuilder(settings.ResolvedConnection);
            if (string.IsNullOrEmpty(builder.ApplicationName))
            {
                builder.ApplicationName = "rowlock locks";
            }

            dataSource = NpgsqlDataSource.Create(builder.ConnectionString);
        }
        catch (ArgumentException e)
        {
            await Console.Error.WriteLineAsync("rowlock: the connection string is not valid: " + e.Message).ConfigureAwait(false);
            return 2;
        }

        await using (dataSource.ConfigureAwait(false))
        {
            var names = new AdvisoryKeyNames(settings.Names);
            foreach (var semaphore in settings.Semaphores)
            {
                var colon = semaphore.LastIndexOf(':');
                if (colon <= 0 || !int.TryParse(semaphore.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var count) || count is < 1 or > SemaphoreKey.MaxCount)
                {
                    await Console.Error.WriteLineAsync($"rowlock: --semaphore takes NAME:COUNT with a count between 1 and {SemaphoreKey.MaxCount}, not '{semaphore}'.").ConfigureAwait(false);
                    return 2;
                }

                names.AddSemaphore(semaphore[..colon], count);
            }

            var options = new LockWaitSnapshotOptions
            {
                AdvisoryKeyNames = names,
                AllDatabases = settings.AllDatabases,
            };
            var refreshes = 0;
            while (true)
            {
                LockWaitSnapshot snapshot;
                IReadOnlyList<SemaphoreUsage> semaphores;
                try
                {
                    snapshot = await dataSource.GetLockWaitSnapshotAsync(options, cancellationToken).ConfigureAwait(false);

                    // Semaphores as one line each (name, count, holders, waiters), not as their slot keys.
                    semaphores = settings.Mermaid ? [] : await dataSource.GetSemaphoresAsync(names, cancellationToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
                {
                    return 0;
                }
                catch (Exception e) when (e is NpgsqlException or TimeoutException)
                {
                    await Console.Error.WriteLineAsync("rowlock: could not read the lock waits: " + e.Message).ConfigureAwait(false);
                    return 1;
                }

                var text = settings.Mermaid ? snapshot.ToMermaid() : snapshot.ToTextTree();
                text += string.Concat(semaphores.Select(s => s + "\n"));
                if (settings.Watch)
                {
                    if (!Console.IsOutputRedirected)
                    {
                        Console.Clear();
                    }

                    await Console.Out.WriteAsync(string.Create(CultureInfo.InvariantCulture,
                        $"rowlock locks at {snapshot.TakenAt.ToLocalTime():yyyy-MM-dd HH:mm:ss} (every {settings.Interval:0.#} s, Ctrl+C to stop)\n")).ConfigureAwait(false);
                }

                await Console.Out.WriteAsync(text).ConfigureAwait(false);
                await Console.Out.FlushAsync(cancellationToken).ConfigureAwait(false);
                refreshes++;
                if (!settings.Watch || refreshes == settings.Count)
                {
                    return 0;
                }

                try
                {
                    await Task.Delay(TimeSpan.FromSeconds(settings.Interval), cancellationToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return 0;
                }
            }
        }
    }
}
