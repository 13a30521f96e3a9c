using Npgsql;
using RowLock.Tests.Infrastructure;

namespace RowLock.Tests;

/// <summary>Issue 16 item 2: advisory keys back to names, in the process (a registry you own) and in psql (a SQL function).</summary>
public sealed class AdvisoryKeyNamesTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    [Fact]
    public void Registered_names_resolve_and_two_registries_never_see_each_other()
    {
        var mine = new AdvisoryKeyNames(["jobs.sync"]);
        var theirs = new AdvisoryKeyNames();
        var key = AdvisoryLockKey.FromName("jobs.sync");

        Assert.True(mine.TryGetName(key, out var name));
        Assert.Equal("jobs.sync", name);
        Assert.False(theirs.TryGetName(key, out _));

        theirs.Add(AdvisoryLockKey.FromName("reports.nightly"));
        theirs.Add(AdvisoryLockKey.FromInt32Pair(7, 11), "legacy importer");
        Assert.True(theirs.TryGetName(AdvisoryLockKey.FromInt64(AdvisoryLockKey.FromName("reports.nightly").Value), out var byValue));
        Assert.Equal("reports.nightly", byValue);
        Assert.True(theirs.TryGetName(AdvisoryLockKey.FromInt32Pair(7, 11), out var label));
        Assert.Equal("legacy importer", label);
        Assert.False(theirs.TryGetName(AdvisoryLockKey.FromInt64(AdvisoryLockKey.FromInt32Pair(7, 11).Key1), out _));
        Assert.Equal(1, mine.Count);
        Assert.Throws<ArgumentException>(() => mine.Add(AdvisoryLockKey.FromInt64(42)));
        Assert.Throws<ArgumentException>(() => mine.Add(""));
    }

    [Theory]
    [InlineData("jobs.sync")]
    [InlineData("O'Brien's \"queue\"")]
    [InlineData(@"C:\temp\n")]
    [InlineData("Überweisung €/日本")]
    public async Task The_SQL_expression_computes_the_same_key_inside_PostgreSQL(string name)
    {
        var key = await db.ScalarAsync<long>("SELECT " + AdvisoryKeyNames.SqlExpression(name));

        Assert.Equal(AdvisoryLockKey.FromName(name).Value, key);
    }

    [Fact]
    public async Task The_installed_function_finds_a_named_lock_in_pg_locks_from_psql()
    {
        await db.DataSource.InstallAdvisoryKeyFunctionAsync();
        await using var holder = await db.DataSource.OpenConnectionAsync();
        await using var tx = await holder.BeginTransactionAsync();
        Assert.True(await tx.TryAcquireAdvisoryLockAsync(AdvisoryLockKey.FromName("jobs.sync")));

        var pid = await db.ScalarAsync<int>($"""
            SELECT pid FROM pg_locks
            WHERE locktype = 'advisory' AND objsubid = 1
              AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND (classid::bigint << 32 | objid::bigint) = {LockDiagnostics.AdvisoryKeyFunctionName}('jobs.sync')
            """);

        Assert.Equal(holder.ProcessID, pid);
        Assert.Equal(AdvisoryLockKey.FromName("Überweisung").Value, await db.ScalarAsync<long>("SELECT rowlock_advisory_key('Überweisung')"));
    }

    [Fact]
    public async Task Installing_into_a_bad_schema_name_is_refused_before_anything_is_sent()
    {
        await Assert.ThrowsAsync<ArgumentException>(() => db.DataSource.InstallAdvisoryKeyFunctionAsync(""));
        await Assert.ThrowsAsync<ArgumentException>(() => db.DataSource.InstallAdvisoryKeyFunctionAsync(new string('s', 64)));
        var e = await Assert.ThrowsAsync<PostgresException>(() => db.DataSource.InstallAdvisoryKeyFunctionAsync("no; DROP TABLE x"));
        Assert.Equal(PostgresErrorCodes.InvalidSchemaName, e.SqlState);
    }
}
