using Npgsql;
using RowLock.Tests.Infrastructure;

namespace RowLock.EntityFrameworkCore.Tests.Infrastructure;

/// <summary>Looks at locks from a second connection, as another user would.</summary>
public static class Probe
{
    /// <summary>True when another transaction holds a lock on the row (a FOR UPDATE NOWAIT from here fails).</summary>
    public static async Task<bool> IsRowLockedAsync(this DatabaseFixture db, string table, long id)
    {
        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();
        await using var command = new NpgsqlCommand($"SELECT 1 FROM {table} WHERE \"Id\" = @id FOR UPDATE NOWAIT", connection, tx);
        command.Parameters.AddWithValue("id", id);
        try
        {
            await command.ExecuteScalarAsync();
            return false;
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.LockNotAvailable)
        {
            return true;
        }
    }

    /// <summary>Holds FOR UPDATE on rows from another connection until disposed.</summary>
    public static async Task<IAsyncDisposable> HoldAsync(this DatabaseFixture db, string table, params long[] ids)
    {
        var connection = await db.DataSource.OpenConnectionAsync();
        var tx = await connection.BeginTransactionAsync();
        await using (var command = new NpgsqlCommand($"SELECT 1 FROM {table} WHERE \"Id\" = ANY(@ids) FOR UPDATE", connection, tx))
        {
            command.Parameters.AddWithValue("ids", ids);
            await command.ExecuteNonQueryAsync();
        }

        return new Holder(connection, tx);
    }

    private sealed class Holder(NpgsqlConnection connection, NpgsqlTransaction tx) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            await tx.DisposeAsync();
            await connection.DisposeAsync();
        }
    }
}
