using Npgsql;
using RowLock.TestServer;

namespace RowLock.Samples.Lab;

/// <summary>
/// The lab's command line: parses the options, finds or starts a server, runs the scenarios and prints one table. Bad
/// input (an unknown option, <c>--workers 0</c>, a server that cannot be reached) ends with one line on the error writer
/// and exit code 2, never a stack trace.
/// </summary>
public static class LabProgram
{
    /// <summary>Exit code: every RowLock side kept its invariant and surfaced no error.</summary>
    public const int Success = 0;

    /// <summary>Exit code: a RowLock side broke its invariant or let a database error reach the caller.</summary>
    public const int RowLockFailed = 1;

    /// <summary>Exit code: usage error, or no server to run against.</summary>
    public const int UsageOrConnectionError = 2;

    /// <summary>Exit code: stopped by Ctrl+C.</summary>
    public const int Stopped = 130;

    /// <summary>The text <c>--help</c> prints.</summary>
    public const string Usage = """
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

        Exit code 0 when every RowLock side holds; 1 when a RowLock side breaks its invariant or lets a database error
        reach the caller; 2 on a usage error or when no server can be reached. Naive sides count and show their database
        errors (e.g. "3 (40P01 x 3)") and are reported, not judged.
        """;

    /// <summary>Runs the lab as the command line <paramref name="args"/> asks.</summary>
    /// <param name="args">The command line.</param>
    /// <param name="output">Receives the result table (and <c>--help</c>).</param>
    /// <param name="error">Receives progress lines and the one line that explains a usage or connection error.</param>
    /// <param name="cancellationToken">Stops the run (Ctrl+C); the throwaway server is still removed.</param>
    /// <returns>The exit code: <see cref="Success"/>, <see cref="RowLockFailed"/>, <see cref="UsageOrConnectionError"/> or <see cref="Stopped"/>.</returns>
    public static async Task<int> RunAsync(string[] args, TextWriter output, TextWriter error, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(args);
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(error);

        var options = new LabOptions();
        string? connection = null;
        string? only = null;
        var ef = false;
        for (var i = 0; i < args.Length; i++)
        {
            var option = args[i];
            if (option is "--help" or "-h")
            {
                await output.WriteLineAsync(Usage).ConfigureAwait(false);
                return Success;
            }

            if (option is not ("--scenario" or "--workers" or "--iterations" or "--connection" or "--ef"))
            {
                return await UsageErrorAsync(error, $"unknown option '{option}'.").ConfigureAwait(false);
            }

            if (option == "--ef")
            {
                ef = true;
                continue;
            }

            if (i + 1 >= args.Length)
            {
                return await UsageErrorAsync(error, $"{option} needs a value.").ConfigureAwait(false);
            }

            var value = args[++i];
            switch (option)
            {
                case "--scenario":
                    only = value;
                    break;
                case "--connection":
                    connection = value;
                    break;
                default:
                    if (!int.TryParse(value, out var number) || number <= 0)
                    {
                        return await UsageErrorAsync(error, $"{option} needs a positive whole number, not '{value}'.").ConfigureAwait(false);
                    }

                    options = option == "--workers" ? options with { Workers = number } : options with { Iterations = number };
                    break;
            }
        }

        var catalogue = ef ? LabRunner.Ef : LabRunner.All;
        if (ef)
        {
            foreach (var (name, why) in LabRunner.WithoutEfForm.Where(s => only is null || s.Key == only))
            {
                await error.WriteLineAsync($"{name}: skipped, {why}.").ConfigureAwait(false);
            }
        }

        var scenarios = only is null ? catalogue : catalogue.Where(s => s.Name == only).ToList();
        if (scenarios.Count == 0 && ef && only is not null && LabRunner.WithoutEfForm.ContainsKey(only))
        {
            return UsageOrConnectionError;
        }

        if (scenarios.Count == 0)
        {
            return await UsageErrorAsync(error, $"no scenario named '{only}'. Known: {string.Join(", ", catalogue.Select(s => s.Name))}.").ConfigureAwait(false);
        }

        try
        {
            return await RunScenariosAsync(connection, scenarios, options, output, error, cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            await error.WriteLineAsync("Stopped.").ConfigureAwait(false);
            return Stopped;
        }
        catch (Exception e) when (e is InvalidOperationException or NpgsqlException or TimeoutException)
        {
            // No server (an unreachable --connection, nothing to start), or one that refuses us (CREATE DATABASE denied).
            await error.WriteLineAsync("rowlock lab: " + OneLine(e.Message)).ConfigureAwait(false);
            return UsageOrConnectionError;
        }
    }

    private static async Task<int> RunScenariosAsync(string? connection, IReadOnlyList<Scenario> scenarios, LabOptions options,
        TextWriter output, TextWriter error, CancellationToken cancellationToken)
    {
        await using var server = await PostgresServer.StartAsync(new PostgresServerOptions
        {
            ConnectionString = connection,
            ConnectionStringVariables = ["ROWLOCK_CONNECTION"],
            Log = error.WriteLine,
        }, cancellationToken).ConfigureAwait(false);
        await error.WriteLineAsync($"Server: {server.Description}").ConfigureAwait(false);
        var database = await server.CreateDatabaseAsync("samples", cancellationToken).ConfigureAwait(false);
        try
        {
            await using var dataSource = NpgsqlDataSource.Create(new NpgsqlConnectionStringBuilder(database) { MaxPoolSize = 200 }.ConnectionString);
            var results = await LabRunner.RunAsync(dataSource, scenarios, options, error, cancellationToken).ConfigureAwait(false);
            await output.WriteLineAsync().ConfigureAwait(false);
            await output.WriteLineAsync(LabRunner.Format(results)).ConfigureAwait(false);
            return results.All(r => r.RowLock.Succeeded) ? Success : RowLockFailed;
        }
        finally
        {
            await server.DropDatabaseAsync(database, CancellationToken.None).ConfigureAwait(false);
        }
    }

    private static async Task<int> UsageErrorAsync(TextWriter error, string problem)
    {
        await error.WriteLineAsync($"rowlock lab: {problem} See --help.").ConfigureAwait(false);
        return UsageOrConnectionError;
    }

    private static string OneLine(string message) => string.Join(' ', message.Split(['\r', '\n'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
}
