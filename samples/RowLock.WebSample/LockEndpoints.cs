using Npgsql;

namespace RowLock.WebSample;

/// <summary>Who blocks whom right now, as the text tree <c>rowlock locks</c> prints.</summary>
public static class LockEndpoints
{
    public static async Task<IResult> GetLockTreeAsync(NpgsqlDataSource dataSource, CancellationToken cancellationToken)
    {
        var snapshot = await dataSource.GetLockWaitSnapshotAsync(cancellationToken: cancellationToken);
        return Results.Text(snapshot.ToTextTree(), "text/plain; charset=utf-8");
    }
}
