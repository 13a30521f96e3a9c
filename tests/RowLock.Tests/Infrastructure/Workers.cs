namespace RowLock.Tests.Infrastructure;

/// <summary>Runs workers that start together (an async barrier), so they really race.</summary>
public static class Workers
{
    public static async Task<T[]> RaceAsync<T>(int count, Func<int, Task<T>> work)
    {
        var start = new AsyncBarrier(count);
        var tasks = Enumerable.Range(0, count).Select(i => Task.Run(async () =>
        {
            await start.SignalAndWaitAsync();
            return await work(i);
        })).ToArray();
        return await Task.WhenAll(tasks);
    }

    public static Task RaceAsync(int count, Func<int, Task> work) =>
        RaceAsync(count, async i =>
        {
            await work(i);
            return 0;
        });
}
