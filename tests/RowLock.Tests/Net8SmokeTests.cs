using System.Diagnostics;
using RowLock.Tests.Infrastructure;
using RowLock.TestServer;

namespace RowLock.Tests;

/// <summary>
/// The packages ship net8.0 builds, but this machine has only the .NET 10 runtime. This test publishes
/// tests/RowLock.Net8Smoke self-contained for net8.0 (the .NET 8 runtime comes from NuGet's
/// Microsoft.NETCore.App.Runtime.linux-x64 package) and runs it against the test server: the net8.0 builds of RowLock and
/// RowLock.Diagnostics, on .NET 8, lose no update, fail NOWAIT fast, refuse bad SQL, and render a snapshot.
/// </summary>
public sealed class Net8SmokeTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    [Fact]
    public async Task The_net8_builds_run_on_a_dotnet_8_runtime_against_a_real_server()
    {
        var root = Directory.CreateTempSubdirectory("rowlock-net8-");
        try
        {
            var output = Path.Combine(root.FullName, "out");
            var project = Path.Combine(ReadmeSnippets.RepositoryRoot, "tests", "RowLock.Net8Smoke");
            await DotnetCli.RunAsync(root.FullName, TimeSpan.FromMinutes(20), "publish", project, "-c", "Release", "-o", output,
                "-p:UseArtifactsOutput=true", $"-p:ArtifactsPath={Path.Combine(root.FullName, "build")}");

            var start = new ProcessStartInfo(Path.Combine(output, "RowLock.Net8Smoke")) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            start.ArgumentList.Add(db.ConnectionString);
            using var process = Process.Start(start)!;
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            using var patience = new CancellationTokenSource(TimeSpan.FromMinutes(3));
            await process.WaitForExitAsync(patience.Token);
            var text = await stdout + await stderr;

            Assert.True(process.ExitCode == 0, text);
            Assert.Contains("runtime .NET 8.0.", text, StringComparison.Ordinal);
            Assert.Contains("rowlock built for .NETCoreApp,Version=v8.0", text, StringComparison.Ordinal); // the net8.0 build of RowLock.dll
            Assert.Contains("ok runner: 200 of 200 increments", text, StringComparison.Ordinal);
            Assert.Contains("ok nowait", text, StringComparison.Ordinal);
            Assert.Contains("ok sql check and advisory key", text, StringComparison.Ordinal);
            Assert.Contains("ok diagnostics", text, StringComparison.Ordinal);
        }
        finally
        {
            root.Delete(recursive: true);
        }
    }
}
