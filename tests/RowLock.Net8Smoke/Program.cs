using System.Reflection;
using System.Runtime.InteropServices;
using System.Runtime.Versioning;
using Dapper;
using Npgsql;
using RowLock;

// Exercises the net8.0 builds of RowLock and RowLock.Diagnostics on a .NET 8 runtime: prints one "ok ..." line per check,
// and exits non-zero (with the failure) when one does not hold. args[0]: a connection string to a database it may write in.
Console.WriteLine($"runtime {RuntimeInformation.FrameworkDescription}");
Console.WriteLine($"rowlock built for {typeof(TransactionRunner).Assembly.GetCustomAttribute<TargetFrameworkAttribute>()?.FrameworkName}");

await using var dataSource = NpgsqlDataSource.Create(args[0]);
var table = "net8_" + Guid.NewGuid().ToString("N")[..8];
await using (var setup = await dataSource.OpenConnectionAsync())
{
    await setup.ExecuteAsync($"CREATE TABLE {table} (id int PRIMARY KEY, v int NOT NULL); INSERT INTO {table} VALUES (1, 0);");
}

// Lost updates: 8 workers x 25 increments through the runner, locked and deferred to COMMIT.
var runner = new TransactionRunner(dataSource);
await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => Task.Run(async () =>
{
    for (var i = 0; i < 25; i++)
    {
        await runner.RunAsync(async (tx, ct) =>
        {
            var v = (await tx.LockRowsAsync<int>($"SELECT v FROM {table} WHERE id = 1", null, RowLockClause.ForUpdate, ct))[0];
            tx.DeferUntilCommit($"UPDATE {table} SET v = @v WHERE id = 1", new { v = v + 1 });
        });
    }
})));
await using (var check = await dataSource.OpenConnectionAsync())
{
    var total = await check.ExecuteScalarAsync<int>($"SELECT v FROM {table} WHERE id = 1");
    Require(total == 200, $"hot row ended at {total}, not 200");
}

Console.WriteLine("ok runner: 200 of 200 increments");

// NOWAIT: a second transaction is told at once and keeps its transaction.
await using (var holder = await dataSource.OpenConnectionAsync())
await using (var holderTx = await holder.BeginTransactionAsync())
await using (var other = await dataSource.OpenConnectionAsync())
await using (var otherTx = await other.BeginTransactionAsync())
{
    await holderTx.LockRowsAsync<int>($"SELECT id FROM {table} WHERE id = 1", null, RowLockClause.ForUpdate);
    try
    {
        await otherTx.LockRowsAsync<int>($"SELECT id FROM {table} WHERE id = 1", null, RowLockClause.ForUpdate.NoWait());
        Require(false, "NOWAIT was granted a held row");
    }
    catch (LockNotAvailableException)
    {
        Require(await other.ExecuteScalarAsync<int>("SELECT 1", transaction: otherTx) == 1, "the transaction is not usable after NOWAIT");
    }
}

Console.WriteLine("ok nowait: LockNotAvailableException, transaction usable");

// The SQL check refuses before sending, and advisory keys match the documented vector.
try
{
    await using var connection = await dataSource.OpenConnectionAsync();
    await using var tx = await connection.BeginTransactionAsync();
    await tx.LockRowsAsync<int>($"SELECT id FROM {table}; DELETE FROM {table}", null, RowLockClause.ForUpdate);
    Require(false, "two statements were accepted");
}
catch (ArgumentException)
{
}

Require(AdvisoryLockKey.FromName("a").Value == -3848465438864589366, "FromName(\"a\") differs from the documented vector");
await using (var connection = await dataSource.OpenConnectionAsync())
await using (var tx = await connection.BeginTransactionAsync())
{
    Require(await tx.TryAcquireAdvisoryLockAsync(AdvisoryLockKey.FromName("net8.smoke")), "the advisory lock was not granted");
}

Console.WriteLine("ok sql check and advisory key");

// Diagnostics: a snapshot and its text tree (RowLock.Diagnostics' net8.0 build).
var snapshot = await dataSource.GetLockWaitSnapshotAsync();
Console.WriteLine("ok diagnostics: " + RowLock.LockWaitRendering.ToTextTree(snapshot).Split('\n')[0]);

await using (var cleanup = await dataSource.OpenConnectionAsync())
{
    await cleanup.ExecuteAsync($"DROP TABLE {table}");
}

return 0;

static void Require(bool condition, string failure)
{
    if (!condition)
    {
        throw new InvalidOperationException(failure);
    }
}
