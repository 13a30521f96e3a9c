using Dapper;
using RowLock.Tests.Infrastructure;

namespace RowLock.Tests;

/// <summary>Semaphore keys: the 32-bit name hash in .NET and SQL, and the two-int slot space apart from the 64-bit space.</summary>
public sealed class SemaphoreKeyTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    private const string H32Sql = "SELECT ('x' || encode(substring(sha256(convert_to(@name, 'UTF8')) from 1 for 4), 'hex'))::bit(32)::int";

    [Fact]
    public void The_class_id_is_the_high_half_of_the_names_64_bit_key()
    {
        Assert.Equal(891055766, SemaphoreKey.FromName("spp_api_v2.fastapi_endpoint_sync").ClassId); // pg_locks classid of the 64-bit key
        Assert.Equal((int)(-3848465438864589366L >> 32), SemaphoreKey.FromName("a").ClassId);
        Assert.Equal(SemaphoreKey.FromName("x"), SemaphoreKey.FromClassId(SemaphoreKey.FromName("x").ClassId));
        Assert.Equal(AdvisoryLockKey.FromInt32Pair(SemaphoreKey.FromName("x").ClassId, -1), SemaphoreKey.FromName("x").TurnstileKey);
        Assert.Throws<ArgumentOutOfRangeException>(() => SemaphoreKey.FromName("x").SlotKey(-1));
        Assert.Throws<ArgumentException>(() => SemaphoreKey.FromName(""));
    }

    [Theory]
    [InlineData("spp_api_v2.fastapi_endpoint_sync")]
    [InlineData("a")]
    [InlineData("exports.heavy-report")]
    [InlineData("Zürich ☃ 東京")]
    public async Task The_sql_expression_gives_the_same_class_id(string name)
    {
        Assert.Equal(SemaphoreKey.FromName(name).ClassId, await db.ScalarAsync<int>(H32Sql, new { name }));
    }

    [Fact]
    public async Task A_slot_key_and_a_64_bit_key_with_the_same_pg_locks_numbers_are_different_locks()
    {
        // Slot (c, 5) and the 64-bit key c << 32 | 5 show the same classid and objid in pg_locks; only objsubid (2 vs 1) differs.
        var semaphore = SemaphoreKey.FromName("keyspace-" + Guid.NewGuid());
        var slot = semaphore.SlotKey(5);
        var wide = AdvisoryLockKey.FromInt64(((long)semaphore.ClassId << 32) | 5);
        Assert.Equal(slot.PgLocksCoordinates.ClassId, wide.PgLocksCoordinates.ClassId);
        Assert.Equal(slot.PgLocksCoordinates.ObjId, wide.PgLocksCoordinates.ObjId);
        Assert.NotEqual(slot, wide);

        await using var slotHolder = await db.DataSource.AcquireAdvisoryLockAsync(slot);
        await using var wideHolder = await db.DataSource.AcquireAdvisoryLockAsync(wide, TimeSpan.Zero); // not blocked by the slot
        var rows = (await (await db.DataSource.OpenConnectionAsync()).QueryAsync<short>(
            $"SELECT objsubid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = {slot.PgLocksCoordinates.ClassId} AND objid = 5 ORDER BY objsubid")).ToArray();
        Assert.Equal(new short[] { 1, 2 }, rows);
    }
}
