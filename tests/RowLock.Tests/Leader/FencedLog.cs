using Dapper;
using Npgsql;
using RowLock.Hosting;

namespace RowLock.Tests.Leader;

/// <summary>
/// The fencing check's ledger. Every leader appends (epoch, n) rows through <see cref="LeaderFenceTransactionExtensions.FenceAsync"/>,
/// where n comes from one counter row each writer increments in its transaction: the counter's row lock is held until
/// COMMIT, so n is the commit order. The check: ordered by n, the epoch never goes down, i.e. no row of an older epoch
/// was committed after the first row of a newer one.
/// </summary>
public sealed class FencedLog
{
    private FencedLog(string table) => Table = table;

    public string Table { get; }

    public static async Task<FencedLog> CreateAsync(NpgsqlDataSource dataSource, string prefix)
    {
        var table = Infrastructure.TestTables.Unique(prefix);
        await using var connection = await dataSource.OpenConnectionAsync();
        await connection.ExecuteAsync($"""
            CREATE TABLE {table} (n bigint PRIMARY KEY, epoch bigint NOT NULL, instance text NOT NULL, fenced boolean NOT NULL);
            CREATE TABLE {table}_counter (id int PRIMARY KEY, n bigint NOT NULL);
            INSERT INTO {table}_counter VALUES (1, 0);
            """);
        return new FencedLog(table);
    }

    /// <summary>One fenced append in a unit of work (the insert deferred to travel with COMMIT when <paramref name="deferred"/>).</summary>
    public Task AppendAsync(TransactionRunner runner, Leadership leadership, string instance, bool deferred, CancellationToken cancellationToken) =>
        runner.RunAsync(async (tx, ct) =>
        {
            await tx.FenceAsync(leadership, ct);
            var n = await tx.Connection!.ExecuteScalarAsync<long>(
                new CommandDefinition($"UPDATE {Table}_counter SET n = n + 1 WHERE id = 1 RETURNING n", transaction: tx, cancellationToken: ct));
            const string insert = "(n, epoch, instance, fenced) VALUES (@n, @epoch, @instance, true)";
            if (deferred)
            {
                tx.DeferUntilCommit($"INSERT INTO {Table} {insert}", new { n, epoch = leadership.Epoch, instance });
            }
            else
            {
                await tx.Connection!.ExecuteAsync(new CommandDefinition($"INSERT INTO {Table} {insert}", new { n, epoch = leadership.Epoch, instance }, tx, cancellationToken: ct));
            }
        }, cancellationToken);

    /// <summary>The same append without the fence: what a leader without fencing writes.</summary>
    public Task AppendUnfencedAsync(TransactionRunner runner, long epoch, string instance, CancellationToken cancellationToken) =>
        runner.RunAsync(async (tx, ct) =>
        {
            var n = await tx.Connection!.ExecuteScalarAsync<long>(
                new CommandDefinition($"UPDATE {Table}_counter SET n = n + 1 WHERE id = 1 RETURNING n", transaction: tx, cancellationToken: ct));
            await tx.Connection!.ExecuteAsync(new CommandDefinition(
                $"INSERT INTO {Table} (n, epoch, instance, fenced) VALUES (@n, @epoch, @instance, false)", new { n, epoch, instance }, tx, cancellationToken: ct));
        }, cancellationToken);

    public async Task<FenceReport> CheckAsync(NpgsqlDataSource dataSource)
    {
        // After a failover the pool's idle connections still point at the dead primary: drop them, read from the live one.
        dataSource.Clear();
        await using var connection = await dataSource.OpenConnectionAsync();
        var rows = await connection.ExecuteScalarAsync<long>($"SELECT count(*) FROM {Table}");
        var epochs = await connection.ExecuteScalarAsync<long>($"SELECT count(DISTINCT epoch) FROM {Table}");
        var violations = await connection.ExecuteScalarAsync<long>($"""
            SELECT count(*) FROM (
                SELECT epoch, max(epoch) OVER (ORDER BY n ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS newer_before
                  FROM {Table}) r
             WHERE epoch < newer_before
            """);
        return new FenceReport(rows, epochs, violations);
    }
}

public readonly record struct FenceReport(long Rows, long Epochs, long Violations)
{
    public override string ToString() => $"{Rows} rows over {Epochs} epochs, {Violations} rows of an older epoch committed after a newer epoch's first row";
}
