using Npgsql;
using RowLock.Samples.Lab;
using RowLock.TestServer;

// The RowLock lab: each concurrency scenario run twice, as teams often write it and with RowLock, side by side.
const string Usage = """
    Usage: dotnet run --project samples/RowLock.Samples -- [options]

      --scenario NAME     run one scenario: hot-record, fifo-stock, edit-conflict, cron-batch, one-time-job, deadlock-retry,
                          presence-heartbeat
      --workers N         concurrent workers (default 8)
      --iterations N      operations per worker, scaled per scenario (default 50)
      --connection STR    PostgreSQL connection string (else ROWLOCK_CONNECTION, else Docker, else local binaries)
      --ef                the EF Core variant: both sides written with a DbContext (naive: load, change, SaveChanges;
                          RowLock: WithRowLock, ClaimRowsAsync, the EF advisory lock, DbContextTransactionRunner);
                          scenarios without an EF form are skipped with a line saying so
      --help              this text

    Exit code 1 when a RowLock side breaks its invariant or lets a database error reach the caller. Naive sides
    count and show their database errors (e.g. "3 (40P01 x 3)") and are reported, not judged.
    """;

var options = new LabOptions();
string? connection = null;
string? only = null;
var ef = false;
for (var i = 0; i < args.Length; i++)
{
    string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value.");
    switch (args[i])
    {
        case "--help" or "-h":
            Console.WriteLine(Usage);
            return 0;
        case "--scenario":
            only = Next();
            break;
        case "--workers":
            options = options with { Workers = PositiveInt(Next(), "--workers") };
            break;
        case "--iterations":
            options = options with { Iterations = PositiveInt(Next(), "--iterations") };
            break;
        case "--connection":
            connection = Next();
            break;
        case "--ef":
            ef = true;
            break;
        default:
            Console.Error.WriteLine($"Unknown option {args[i]}.\n\n{Usage}");
            return 2;
    }
}

var catalogue = ef ? LabRunner.Ef : LabRunner.All;
if (ef)
{
    foreach (var (name, why) in LabRunner.WithoutEfForm.Where(s => only is null || s.Key == only))
    {
        Console.Error.WriteLine($"{name}: skipped, {why}.");
    }
}

var scenarios = only is null ? catalogue : catalogue.Where(s => s.Name == only).ToList();
if (scenarios.Count == 0 && ef && only is not null && LabRunner.WithoutEfForm.ContainsKey(only))
{
    return 2;
}

if (scenarios.Count == 0)
{
    Console.Error.WriteLine($"No scenario named '{only}'. Known: {string.Join(", ", catalogue.Select(s => s.Name))}.");
    return 2;
}

// Ctrl+C stops the run and still removes the throwaway server.
using var stop = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    e.Cancel = true;
    stop.Cancel();
};

await using var server = await PostgresServer.StartAsync(new PostgresServerOptions
{
    ConnectionString = connection,
    ConnectionStringVariables = ["ROWLOCK_CONNECTION"],
    Log = Console.Error.WriteLine,
}, stop.Token);
Console.Error.WriteLine($"Server: {server.Description}");
var database = await server.CreateDatabaseAsync("samples", stop.Token);
try
{
    await using var dataSource = NpgsqlDataSource.Create(new NpgsqlConnectionStringBuilder(database) { MaxPoolSize = 200 }.ConnectionString);
    var results = await LabRunner.RunAsync(dataSource, scenarios, options, Console.Error, stop.Token);
    Console.WriteLine();
    Console.WriteLine(LabRunner.Format(results));
    return results.All(r => r.RowLock.Succeeded) ? 0 : 1;
}
catch (OperationCanceledException) when (stop.IsCancellationRequested)
{
    Console.Error.WriteLine("Stopped.");
    return 130;
}
finally
{
    await server.DropDatabaseAsync(database, CancellationToken.None);
}

static int PositiveInt(string text, string option) =>
    int.TryParse(text, out var value) && value > 0 ? value : throw new ArgumentException($"{option} needs a positive whole number, not '{text}'.");
