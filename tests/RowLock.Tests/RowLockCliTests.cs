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

        Assert.Equal(2, exit);
        Assert.Contains("--connection", output + error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Rowlock_version_prints_the_version()
    {
        var (exit, output, error) = await RunAsync("--version");

        Assert.True(exit == 0, error);
        Assert.StartsWith(RowLock.TestServer.DotnetCli.VersionPrefix(), output.Trim(), StringComparison.Ordinal); // Directory.Build.props' version
    }

    [Fact]
    public async Task Exit_codes_say_whether_a_wait_passed_the_threshold_or_the_call_failed()
    {
        await using var chain = await StagedLockChain.StageAsync(db);

        var over = await RunAsync("locks", "--connection", db.ConnectionString, "--fail-if-waiting", "1ms");
        var under = await RunAsync("locks", "--connection", db.ConnectionString, "--fail-if-waiting", "1h");
        var badDuration = await RunAsync("locks", "--connection", db.ConnectionString, "--fail-if-waiting", "soon");
        var unknownOption = await RunAsync("locks", "--connection", db.ConnectionString, "--frobnicate");
        var unreachable = await RunAsync("locks", "--connection", "Host=127.0.0.1;Port=1;Username=x;Timeout=3");

        Assert.Equal(1, over.Exit);
        Assert.Contains("5 session(s) waited on a lock longer than 0.001 s", over.Error, StringComparison.Ordinal);
        Assert.Contains("5 sessions wait behind 2 root blockers", over.Output, StringComparison.Ordinal);
        Assert.Equal(0, under.Exit);
        Assert.Equal(2, badDuration.Exit);
        Assert.Contains("'soon' is not a duration", badDuration.Error, StringComparison.Ordinal);
        Assert.Equal(2, unknownOption.Exit);
        Assert.Equal(2, unreachable.Exit);
        Assert.StartsWith("rowlock: could not read the lock waits:", unreachable.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Rowlock_locks_json_has_the_documented_shape()
    {
        await using var chain = await StagedLockChain.StageAsync(db);

        var (exit, output, error) = await RunAsync("locks", "--connection", db.ConnectionString, "--json", "--name", StagedLockChain.AdvisoryName);

        Assert.True(exit == 0, error);
        using var json = System.Text.Json.JsonDocument.Parse(output);
        var root = json.RootElement;
        Assert.Equal(1, root.GetProperty("version").GetInt32());
        Assert.Equal(Database(), root.GetProperty("database").GetString());
        Assert.Equal(5, root.GetProperty("waiting").GetInt32());
        Assert.Equal([chain.Pids["A"], chain.Pids["F"]], root.GetProperty("roots").EnumerateArray().Select(e => e.GetInt32()));
        var sessions = root.GetProperty("sessions").EnumerateArray().ToDictionary(e => e.GetProperty("pid").GetInt32());
        var b = sessions[chain.Pids["B"]];
        Assert.Equal("session", b.GetProperty("kind").GetString());
        Assert.Equal("row", b.GetProperty("waitingFor").GetProperty("kind").GetString());
        Assert.Equal("public.accounts", b.GetProperty("waitingFor").GetProperty("relation").GetString());
        Assert.Equal("(0,1)", b.GetProperty("waitingFor").GetProperty("ctid").GetString());
        Assert.Equal([chain.Pids["A"]], b.GetProperty("holders").EnumerateArray().Select(e => e.GetInt32()));
        Assert.Equal(chain.Pids["A"], b.GetProperty("rootBlocker").GetInt32());
        Assert.Equal(StagedLockChain.AdvisoryName, sessions[chain.Pids["C"]].GetProperty("waitingFor").GetProperty("advisoryName").GetString());
        var a = sessions[chain.Pids["A"]];
        Assert.True(a.GetProperty("isRoot").GetBoolean());
        Assert.Equal(4, a.GetProperty("holdsUp").GetInt32());
        Assert.Equal("idle in transaction", a.GetProperty("state").GetString());
        Assert.True(a.GetProperty("stateSeconds").GetDouble() >= 0);
    }

    [Fact]
    public async Task The_help_examples_quote_the_connection_string()
    {
        var (exit, output, error) = await RunAsync("locks", "--help");

        Assert.True(exit == 0, error);
        Assert.Contains("rowlock locks --connection \"Host=db;Username=ops;Database=shop\"", output, StringComparison.Ordinal);
        Assert.Contains("--fail-if-waiting", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Rowlock_key_prints_the_database_filter_once()
    {
        var (exit, output, error) = await RunAsync("key", "jobs.sync");

        Assert.True(exit == 0, error);
        var findIt = output.Split('\n').Single(l => l.StartsWith("find it:", StringComparison.Ordinal));
        Assert.Single(System.Text.RegularExpressions.Regex.Matches(findIt, "database ="));
        var query = findIt["find it:".Length..].Trim().TrimEnd(';');
        Assert.Equal(0L, await db.ScalarAsync<long>($"SELECT count(*) FROM ({query}) found"));
    }

    [Fact]
    public async Task Terminate_refuses_a_session_that_is_not_a_root_blocker()
    {
        await using var chain = await StagedLockChain.StageAsync(db);

        var (exit, output, error) = await RunAsync("terminate", chain.Pids["B"].ToString(System.Globalization.CultureInfo.InvariantCulture), "--connection", db.ConnectionString, "--yes");

        Assert.Equal(1, exit);
        Assert.Contains($"refused: pid {chain.Pids["B"]} is not a root blocker: it waits itself", error, StringComparison.Ordinal);
        Assert.Contains($"behind root pid {chain.Pids["A"]}", error, StringComparison.Ordinal);
        Assert.Equal("", output);
        Assert.Equal(1L, await db.ScalarAsync<long>($"SELECT count(*) FROM pg_stat_activity WHERE pid = {chain.Pids["B"]}"));
    }

    [Fact]
    public async Task Terminate_of_the_root_blocker_shows_what_it_holds_asks_and_frees_the_chain()
    {
        await using var chain = await StagedLockChain.StageAsync(db);
        var pid = chain.Pids["A"].ToString(System.Globalization.CultureInfo.InvariantCulture);

        var declined = await RunAsync(["terminate", pid, "--connection", db.ConnectionString], stdin: "no\n");
        Assert.Equal(1, declined.Exit);
        Assert.Contains("not confirmed; nothing was done", declined.Error, StringComparison.Ordinal);
        Assert.Equal(1L, await db.ScalarAsync<long>($"SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}"));

        var (exit, output, error) = await RunAsync(["terminate", pid, "--connection", db.ConnectionString], stdin: "yes\n");

        Assert.True(exit == 0, error);
        Assert.Contains($"pid {pid}: (A) user ", output, StringComparison.Ordinal);
        Assert.Contains("idle in transaction for ", output, StringComparison.Ordinal);
        Assert.Contains("holds up 4, query: SELECT balance FROM accounts WHERE id = 1 FOR UPDATE", output, StringComparison.Ordinal);
        Assert.Contains("Holds: ", output, StringComparison.Ordinal);
        Assert.Contains("relation public.accounts [RowShareLock]", output, StringComparison.Ordinal);
        Assert.Contains("Will: pg_terminate_backend ends the session", output, StringComparison.Ordinal);
        Assert.Contains($"Done: pid {pid} terminated. Waiting before: 5; waiting now: ", output, StringComparison.Ordinal);
        Assert.Equal(0L, await db.ScalarAsync<long>($"SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}"));
        // B got A's row: it waits no more.
        Assert.Equal(0L, await db.ScalarAsync<long>($"SELECT count(*) FROM pg_stat_activity WHERE pid = {chain.Pids["B"]} AND wait_event_type = 'Lock'"));
    }

    [Fact]
    public async Task Cancel_of_an_idle_in_transaction_root_says_it_frees_nothing_and_force_lets_a_non_root_through()
    {
        await using var chain = await StagedLockChain.StageAsync(db);
        var a = chain.Pids["A"].ToString(System.Globalization.CultureInfo.InvariantCulture);
        var d = chain.Pids["D"].ToString(System.Globalization.CultureInfo.InvariantCulture);

        var idle = await RunAsync("cancel", a, "--connection", db.ConnectionString, "--yes");
        // The cancel of an idle session changed nothing: D still waits behind C.
        Assert.Equal(1L, await db.ScalarAsync<long>($"SELECT count(*) FROM pg_stat_activity WHERE pid = {d} AND wait_event_type = 'Lock'"));
        var forced = await RunAsync("cancel", d, "--connection", db.ConnectionString, "--yes", "--force");

        Assert.True(idle.Exit == 0, idle.Error);
        Assert.Contains("It is idle in transaction, so there is no statement to cancel and its locks stay: use `rowlock terminate`", idle.Output, StringComparison.Ordinal);
        Assert.True(forced.Exit == 0, forced.Error);
        Assert.Contains($"Warning: pid {d} is not a root blocker: it waits itself", forced.Output, StringComparison.Ordinal);
        Assert.Contains($"Done: pid {d} sent a cancel request.", forced.Output, StringComparison.Ordinal);
        // D's INSERT was cancelled: it waits no more, while A (idle, nothing to cancel) still holds up B, C and E.
        await WaitUntilAsync($"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = {d} AND wait_event_type = 'Lock'");
        Assert.Equal(1L, await db.ScalarAsync<long>($"SELECT count(*) FROM pg_stat_activity WHERE pid = {a}"));
    }

    private async Task WaitUntilAsync(string condition)
    {
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (!await db.ScalarAsync<bool>(condition))
        {
            Assert.True(DateTime.UtcNow < deadline, "Gave up waiting for: " + condition);
            await Task.Delay(50);
        }
    }

    private string Database() => new Npgsql.NpgsqlConnectionStringBuilder(db.ConnectionString).Database!;

    private static Task<(int Exit, string Output, string Error)> RunAsync(params string[] arguments) => RunAsync(arguments, stdin: "");

    private static async Task<(int Exit, string Output, string Error)> RunAsync(string[] arguments, string stdin)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "RowLock.Cli.dll"));
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        start.Environment.Remove("ROWLOCK_CONNECTION");
        using var process = Process.Start(start)!;
        await process.StandardInput.WriteAsync(stdin);
        process.StandardInput.Close();
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var patience = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        await process.WaitForExitAsync(patience.Token);
        return (process.ExitCode, await output, await error);
    }
}
