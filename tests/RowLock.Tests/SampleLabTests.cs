using Microsoft.EntityFrameworkCore;
using Npgsql;
using RowLock.Samples.Lab;
using RowLock.Tests.Infrastructure;

namespace RowLock.Tests;

/// <summary>Runs every sample scenario in-process with small numbers, so the samples can never rot.</summary>
public sealed class SampleLabTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    public static TheoryData<string> Scenarios => new(LabRunner.All.Select(s => s.Name));

    [Theory]
    [MemberData(nameof(Scenarios))]
    public async Task Every_scenario_keeps_its_rowlock_invariant(string name)
    {
        var scenario = LabRunner.All.Single(s => s.Name == name);
        var result = await scenario.RunAsync(db.DataSource, new LabOptions(Workers: 4, Iterations: 10), CancellationToken.None);

        Assert.True(result.RowLock.InvariantHolds, $"{name}: {result.RowLock.Detail}");
        Assert.Equal(0, result.RowLock.ErrorsSurfaced);
        Assert.Contains(name, LabRunner.Format([result]), StringComparison.Ordinal);
    }

    public static TheoryData<string> EfScenarios => new(LabRunner.Ef.Select(s => s.Name));

    [Theory]
    [MemberData(nameof(EfScenarios))]
    public async Task Every_ef_scenario_keeps_its_rowlock_invariant_and_its_naive_errors_are_counted_not_thrown(string name)
    {
        var scenario = LabRunner.Ef.Single(s => s.Name == name);
        var result = await scenario.RunAsync(db.DataSource, new LabOptions(Workers: 4, Iterations: 10), CancellationToken.None);

        Assert.True(result.RowLock.InvariantHolds, $"{name}: {result.RowLock.Detail}");
        Assert.Equal(0, result.RowLock.ErrorsSurfaced);
        // An error escaping a naive side (e.g. a DbUpdateException the counter did not recognise) would stop that side.
        Assert.DoesNotContain("side stopped by an uncounted error", result.Naive.Detail, StringComparison.Ordinal);
        Assert.Contains(name, LabRunner.Format([result]), StringComparison.Ordinal);
    }

    [Fact]
    public void The_ef_lab_covers_every_scenario_but_the_ones_it_says_it_skips() =>
        Assert.Equal(LabRunner.All.Select(s => s.Name).Order(),
            LabRunner.Ef.Select(s => s.Name).Concat(LabRunner.WithoutEfForm.Keys).Order());

    [Fact]
    public async Task A_deadlock_in_an_ef_SaveChanges_is_counted_as_40P01_not_thrown()
    {
        await db.ExecuteAsync("DROP TABLE IF EXISTS hot_record; CREATE TABLE hot_record (id int PRIMARY KEY, total int NOT NULL); INSERT INTO hot_record VALUES (1, 0), (2, 0);");
        var factory = RowLock.Samples.Ef.LabContext.Factory(db.DataSource);
        var errors = new ErrorCounter();
        var bothLockedOne = new AsyncBarrier(2);

        // SaveChanges wraps the 40P01 in a DbUpdateException, which is not a DbException.
        var outcomes = await Task.WhenAll(new[] { (1, 2), (2, 1) }.Select(order => errors.RunAsync(async () =>
        {
            await using var context = factory.CreateDbContext();
            await using var tx = await context.Database.BeginTransactionAsync();
            var first = await context.HotTotals.SingleAsync(h => h.Id == order.Item1);
            first.Total++;
            await context.SaveChangesAsync();
            await bothLockedOne.SignalAndWaitAsync();
            var second = await context.HotTotals.SingleAsync(h => h.Id == order.Item2);
            second.Total++;
            await context.SaveChangesAsync();
            await tx.CommitAsync();
        })));

        Assert.Equal("40P01 x 1", errors.Kinds);
        Assert.Single(outcomes, ok => ok);
    }

    [Fact]
    public void The_lab_has_eight_scenarios_in_readme_order() =>
        Assert.Equal(["hot-record", "fifo-stock", "edit-conflict", "cron-batch", "one-time-job", "deadlock-retry", "presence-heartbeat", "leader-job"], LabRunner.All.Select(s => s.Name));

    [Fact]
    public async Task A_database_error_escaping_a_side_is_shown_and_the_lab_goes_on()
    {
        var result = await new NaiveSideThatThrows().RunAsync(db.DataSource, new LabOptions(Workers: 2, Iterations: 1), CancellationToken.None);

        Assert.Equal(1, result.Naive.ErrorsSurfaced);
        Assert.False(result.Naive.InvariantHolds);
        Assert.Contains("22012", result.Naive.ErrorKinds, StringComparison.Ordinal);
        Assert.True(result.RowLock.Succeeded); // the other side still ran
        Assert.Contains("1 (22012 x 1)", LabRunner.Format([result]), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Naive_workers_that_deadlock_count_the_40P01_and_all_finish()
    {
        await db.ExecuteAsync("DROP TABLE IF EXISTS lab_pair; CREATE TABLE lab_pair (id int PRIMARY KEY, n int NOT NULL); INSERT INTO lab_pair VALUES (1, 0), (2, 0);");
        var errors = new ErrorCounter();
        var bothLockedOne = new AsyncBarrier(2);

        // Opposite lock orders with a barrier in between: PostgreSQL must break the cycle by failing one of them.
        var outcomes = await Task.WhenAll(new[] { (1, 2), (2, 1) }.Select(order => errors.RunAsync(async () =>
        {
            await using var connection = await db.DataSource.OpenConnectionAsync();
            await using var tx = await connection.BeginTransactionAsync();
            await Execute(connection, tx, "UPDATE lab_pair SET n = n + 1 WHERE id = " + order.Item1);
            await bothLockedOne.SignalAndWaitAsync();
            await Execute(connection, tx, "UPDATE lab_pair SET n = n + 1 WHERE id = " + order.Item2);
            await tx.CommitAsync();
        })));

        Assert.Equal(1, errors.Count);
        Assert.Equal("40P01 x 1", errors.Kinds);
        Assert.Single(outcomes, ok => ok);
    }

    [Fact]
    public async Task Presence_heartbeats_with_a_skip_locked_claim_surface_no_error_and_refresh_the_row_every_round()
    {
        var scenario = LabRunner.All.Single(s => s.Name == "presence-heartbeat");

        var result = await scenario.RunAsync(db.DataSource, new LabOptions(Workers: 8, Iterations: 20), CancellationToken.None);

        Assert.True(result.RowLock.Succeeded, result.RowLock.Detail);
        Assert.Contains("0 failed of 80; fresh after 10 of 10 rounds", result.RowLock.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Naive_repeatable_read_heartbeats_surface_40001_to_the_tabs()
    {
        var scenario = LabRunner.All.Single(s => s.Name == "presence-heartbeat");

        // Whether tabs overlap depends on scheduling; every lab run here showed it (20 runs: 106 to 162 of 200 heartbeats).
        ScenarioResult? result = null;
        for (var run = 0; run < 5 && result?.Naive.ErrorsSurfaced is null or 0; run++)
        {
            result = await scenario.RunAsync(db.DataSource, new LabOptions(Workers: 8, Iterations: 20), CancellationToken.None);
        }

        Assert.True(result!.Naive.ErrorsSurfaced > 0, result.Naive.Detail);
        Assert.Matches("^40001 x [0-9]+$", result.Naive.ErrorKinds);
        Assert.False(result.Naive.InvariantHolds);
        Assert.True(result.RowLock.Succeeded, result.RowLock.Detail);
    }

    private static async Task Execute(NpgsqlConnection connection, NpgsqlTransaction tx, string sql)
    {
        await using var command = new NpgsqlCommand(sql, connection, tx);
        await command.ExecuteNonQueryAsync();
    }

    /// <summary>A scenario whose naive side lets a database error escape (no counting), as the old cron-batch did.</summary>
    private sealed class NaiveSideThatThrows : Scenario
    {
        public override string Name => "naive-side-that-throws";

        public override string Invariant => "none";

        protected override Task SetUpAsync(NpgsqlDataSource dataSource, LabOptions options, CancellationToken cancellationToken) => Task.CompletedTask;

        protected override async Task<SideResult> RunNaiveAsync(NpgsqlDataSource dataSource, LabOptions options, CancellationToken cancellationToken)
        {
            await dataSource.CreateCommand("SELECT 1 / 0").ExecuteScalarAsync(cancellationToken); // 22012, uncounted
            return new SideResult(0, 0, true, "unreachable", TimeSpan.Zero);
        }

        protected override Task<SideResult> RunRowLockAsync(NpgsqlDataSource dataSource, LabOptions options, CancellationToken cancellationToken) =>
            Task.FromResult(new SideResult(0, 0, true, "ran", TimeSpan.Zero));
    }
}
