namespace RowLock.Tests.Infrastructure;

/// <summary>
/// Counts the workers inside a critical section: how many entered in all, and the most that were ever inside at once
/// (one, if the lock guarding it excludes).
/// </summary>
public sealed class Occupancy
{
    private int _inside;
    private int _mostAtOnce;
    private int _entries;

    public int MostAtOnce => Volatile.Read(ref _mostAtOnce);

    public int Entries => Volatile.Read(ref _entries);

    /// <summary>
    /// <paramref name="workers"/> racing workers each take the lock <paramref name="rounds"/> times (<paramref name="acquire"/>,
    /// released by disposing it) and visit the section while they hold it.
    /// </summary>
    public static async Task<Occupancy> RaceAsync(int workers, int rounds, Func<Task<IAsyncDisposable>> acquire, TimeSpan stay)
    {
        var section = new Occupancy();
        await Workers.RaceAsync(workers, async _ =>
        {
            for (var i = 0; i < rounds; i++)
            {
                await using var held = await acquire();
                await section.VisitAsync(stay);
            }
        });
        return section;
    }

    /// <summary>Enters, stays for <paramref name="stay"/> (so that an overlap has time to show), and leaves.</summary>
    public async Task VisitAsync(TimeSpan stay)
    {
        var now = Interlocked.Increment(ref _inside);
        int seen;
        while ((seen = Volatile.Read(ref _mostAtOnce)) < now && Interlocked.CompareExchange(ref _mostAtOnce, now, seen) != seen)
        {
        }

        Interlocked.Increment(ref _entries);
        await Task.Delay(stay);
        Interlocked.Decrement(ref _inside);
    }
}
