using System.Globalization;
using Npgsql;
using Spectre.Console.Cli;

namespace RowLock.Cli;

/// <summary><c>rowlock locks</c>: the blocking tree now, or refreshed with <c>--watch</c>.</summary>
internal sealed class LocksCommand : AsyncCommand<LocksSettings>
{
    public override async Task<int> ExecuteAsync(CommandContext context, LocksSettings settings, CancellationToken cancellationToken)
    {
        var dataSource = settings.CreateDataSource("rowlock locks");
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
                    semaphores = settings.Mermaid || settings.Json ? [] : await dataSource.GetSemaphoresAsync(names, cancellationToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
                {
                    return (int)ExitCode.Ok;
                }
                catch (Exception e) when (e is NpgsqlException or TimeoutException)
                {
                    throw new CliException("could not read the lock waits: " + e.Message);
                }

                var text = settings.Json ? snapshot.ToJson() : settings.Mermaid ? snapshot.ToMermaid() : snapshot.ToTextTree();
                text += string.Concat(semaphores.Select(s => s + "\n"));
                if (settings.Watch && !settings.Json)
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
                var exit = Verdict(snapshot, settings.FailThreshold);
                refreshes++;
                if (!settings.Watch || refreshes == settings.Count)
                {
                    return (int)exit;
                }

                try
                {
                    await Task.Delay(TimeSpan.FromSeconds(settings.Interval), cancellationToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return (int)exit;
                }
            }
        }
    }

    /// <summary>1 when a wait is longer than the threshold, so cron and probes can act on the exit code alone.</summary>
    private static ExitCode Verdict(LockWaitSnapshot snapshot, TimeSpan? threshold)
    {
        if (threshold is not { } limit)
        {
            return ExitCode.Ok;
        }

        var over = snapshot.Waiting.Where(w => w.WaitDuration > limit).ToArray();
        if (over.Length == 0)
        {
            return ExitCode.Ok;
        }

        Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"rowlock: {over.Length} session(s) waited on a lock longer than {limit.TotalSeconds:0.###} s (longest {over.Max(w => w.WaitDuration)!.Value.TotalSeconds:0.#} s)."));
        return ExitCode.WaitsFoundOrNothingDone;
    }
}
