using Npgsql;
using RowLock;
using RowLock.Hosting;

// Usage: RowLock.Leader.Candidate <connection string> <election name> <log table> <candidates> <resign after rows>
// Runs that many candidates in this process; each appends fenced (epoch, n) rows to the log table while it leads and
// resigns after the given number of rows. Stops (resigning) when standard input closes. Prints "ready" once started.
var (connectionString, name, table) = (args[0], args[1], args[2]);
var count = int.Parse(args[3], System.Globalization.CultureInfo.InvariantCulture);
var resignAfter = int.Parse(args[4], System.Globalization.CultureInfo.InvariantCulture);
await using var dataSource = NpgsqlDataSource.Create(connectionString);
using var stop = new CancellationTokenSource();
var runner = new TransactionRunner(dataSource);
var failures = 0;
var tasks = Enumerable.Range(0, count).Select(i => Task.Run(async () =>
{
    var instance = $"p{Environment.ProcessId}-c{i}";
    var election = new LeaderElection(dataSource, name, new LeaderElectionOptions { InstanceName = instance, RetryDelay = TimeSpan.FromMilliseconds(200) });
    while (!stop.IsCancellationRequested)
    {
        Leadership leadership;
        try
        {
            leadership = await election.AcquireAsync(stop.Token);
        }
        catch (OperationCanceledException)
        {
            return;
        }

        await using (leadership)
        {
            for (var rows = 0; rows < resignAfter && !stop.IsCancellationRequested; rows++)
            {
                try
                {
                    await runner.RunAsync(async (tx, ct) =>
                    {
                        await tx.FenceAsync(leadership, ct);
                        await using var next = new NpgsqlCommand($"UPDATE {table}_counter SET n = n + 1 WHERE id = 1 RETURNING n", tx.Connection, tx);
                        var n = (long)(await next.ExecuteScalarAsync(ct))!;
                        tx.DeferUntilCommit($"INSERT INTO {table} (n, epoch, instance, fenced) VALUES (@n, @epoch, @instance, true)", new { n, epoch = leadership.Epoch, instance });
                    });
                }
                catch (LeadershipLostException)
                {
                    break;
                }
                catch (Exception e) when (e is NpgsqlException or RowLockException)
                {
                    Interlocked.Increment(ref failures);
                    Console.Error.WriteLine(e);
                    break;
                }
            }
        }
    }
})).ToArray();

Console.WriteLine("ready");
await Console.In.ReadToEndAsync();
await stop.CancelAsync();
await Task.WhenAll(tasks);
Console.WriteLine($"stopped failures={failures}");
return failures == 0 ? 0 : 1;
