using System.Runtime.CompilerServices;

namespace RowLock.Tests.Infrastructure;

internal static class TestSetup
{
    /// <summary>Concurrency tests run many workers at once on 2 cores; do not let the thread pool's slow growth pace them.</summary>
    [ModuleInitializer]
    internal static void Initialize() => ThreadPool.SetMinThreads(Math.Max(64, Environment.ProcessorCount), 64);
}
