using Npgsql;

namespace RowLock.Benchmarks;

/// <summary>What every benchmark gets: the data source, the connection string, and the run's size (<see cref="Repeats"/>; <see cref="Scale"/> multiplies the timed durations of the hot-row and network benchmarks).</summary>
internal sealed record BenchContext(NpgsqlDataSource DataSource, string ConnectionString, bool Quick, double Scale = 1, int? RepeatsOption = null)
{
    /// <summary>Alternating repeats of the hot-row, FIFO, savepoint and network comparisons: <c>--repeats</c>, else 1 when quick, else 3.</summary>
    public int Repeats => RepeatsOption ?? (Quick ? 1 : 3);

    public async Task ExecuteAsync(string sql)
    {
        await using var command = DataSource.CreateCommand(sql);
        await command.ExecuteNonQueryAsync();
    }

    public async Task<T> ScalarAsync<T>(string sql)
    {
        await using var command = DataSource.CreateCommand(sql);
        return (T)(await command.ExecuteScalarAsync())!;
    }
}
