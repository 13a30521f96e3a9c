using RowLock.Samples.Lab;
using RowLock.Tests.Infrastructure;

namespace RowLock.Tests;

/// <summary>Runs every sample scenario in-process with small numbers, so the samples can never rot.</summary>
public sealed class SampleLabTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    public static TheoryData<string> Scenarios => new(LabRunner.All.Select(s => s.Name));

    [Theory]
    [MemberData(nameof(Scenarios))]
    public async Task Every_scenario_keeps_its_rowlock_invariant(string name)
    {
        var scenario = LabRunner.All.Single(s => s.Name == name);
        var result = await scenario.RunAsync(db.DataSource, new LabOptions(Workers: 4, Iterations: 10), CancellationToken.None);

        Assert.True(result.RowLock.InvariantHolds, $"{name}: {result.RowLock.Detail}");
        Assert.Equal(0, result.RowLock.ErrorsSurfaced);
        Assert.Contains(name, LabRunner.Format([result]), StringComparison.Ordinal);
    }
}
