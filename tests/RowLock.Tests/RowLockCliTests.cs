using System.Diagnostics;
using RowLock.Tests.Infrastructure;

namespace RowLock.Tests;

/// <summary>Issue 16 item 4: the built <c>rowlock</c> tool, run as a process against a staged chain.</summary>
public sealed class RowLockCliTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    // xUnit runs the tests of one class one after the other, so each staged chain has the class's database to itself.

    [Fact]
    public async Task Rowlock_locks_prints_the_blocking_tree_of_a_real_chain()
    {
        await using var chain = await StagedLockChain.StageAsync(db);

        var (exit, output, error) = await RunAsync("locks", "--connection", db.ConnectionString, "--name", StagedLockChain.AdvisoryName);

        Assert.True(exit == 0, error);
        Assert.Equal(LockDiagnosticsTests.ExpectedTree, chain.Normalise(output, Database()));
    }

    [Fact]
    public async Task Rowlock_locks_mermaid_prints_the_graph_of_a_real_chain()
    {
        await using var chain = await StagedLockChain.StageAsync(db);

        var (exit, output, error) = await RunAsync("locks", "--connection", db.ConnectionString, "--mermaid", "--name", StagedLockChain.AdvisoryName);

        Assert.True(exit == 0, error);
        Assert.Equal(LockDiagnosticsTests.ExpectedMermaid, chain.Normalise(output, Database()));
    }

    [Fact]
    public async Task Rowlock_locks_watch_refreshes_the_tree()
    {
        await using var chain = await StagedLockChain.StageAsync(db);

        var (exit, output, error) = await RunAsync("locks", "--connection", db.ConnectionString, "--watch", "--interval", "0.2", "--count", "2");

        Assert.True(exit == 0, error);
        var frames = output.Split("rowlock locks at ", StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, frames.Length);
        Assert.All(frames, f => Assert.Contains("5 sessions wait behind 2 root blockers", f, StringComparison.Ordinal));
        // No --name given: the key cannot be turned back into its name, so it shows as a number.
        Assert.All(frames, f => Assert.DoesNotContain("\"jobs.sync\"", f, StringComparison.Ordinal));
    }

    [Fact]
    public async Task Rowlock_key_prints_the_key_its_pg_locks_coordinates_and_the_SQL()
    {
        var key = AdvisoryLockKey.FromName("jobs.sync");

        var (exit, output, error) = await RunAsync("key", "jobs.sync");

        Assert.True(exit == 0, error);
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal($"key:      {key.Value}", lines[1]);
        Assert.Equal($"pg_locks: classid = {key.PgLocksCoordinates.ClassId}, objid = {key.PgLocksCoordinates.ObjId}, objsubid = 1", lines[2]);
        var sql = lines[3]["sql:      ".Length..];
        Assert.Equal(key.Value, await db.ScalarAsync<long>("SELECT " + sql));
        Assert.Contains(key.PgLocksPredicate, lines[4], StringComparison.Ordinal);
    }

    [Fact]
    public async Task Rowlock_locks_without_a_connection_string_fails_with_a_clear_message()
    {
        var (exit, output, error) = await RunAsync("locks");

        Assert.NotEqual(0, exit);
        Assert.Contains("--connection", output + error, StringComparison.Ordinal);
    }

    private string Database() => new Npgsql.NpgsqlConnectionStringBuilder(db.ConnectionString).Database!;

    private static async Task<(int Exit, string Output, string Error)> RunAsync(params string[] arguments)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "RowLock.Cli.dll"));
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        start.Environment.Remove("ROWLOCK_CONNECTION");
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var patience = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        await process.WaitForExitAsync(patience.Token);
        return (process.ExitCode, await output, await error);
    }
}
