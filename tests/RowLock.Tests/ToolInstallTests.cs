using System.Diagnostics;
using RowLock.Tests.Infrastructure;
using RowLock.TestServer;

namespace RowLock.Tests;

/// <summary>
/// The `rowlock` tool from source, as README and docs/diagnostics.md say: pack it, install it from the local folder into a
/// tool path, run it. The pack builds into its own artifacts folder, so it never races the test run's own build outputs.
/// </summary>
public sealed class ToolInstallTests
{
    [Fact]
    public async Task The_tool_packed_from_source_installs_into_a_tool_path_and_runs_version_and_key()
    {
        var guide = File.ReadAllText(Path.Combine(ReadmeSnippets.RepositoryRoot, "docs", "diagnostics.md"));
        Assert.Contains("dotnet pack src/RowLock.Cli -c Release -o ./artifacts", guide, StringComparison.Ordinal);
        Assert.Contains("dotnet tool install RowLock.Cli --tool-path ./tools --add-source ./artifacts", guide, StringComparison.Ordinal);

        var root = Directory.CreateTempSubdirectory("rowlock-tool-");
        var version = "0.0.0-tooltest." + DateTime.UtcNow.ToString("yyyyMMddHHmmss", System.Globalization.CultureInfo.InvariantCulture);
        try
        {
            var feed = Path.Combine(root.FullName, "artifacts");
            var tools = Path.Combine(root.FullName, "tools");
            var project = Path.Combine(ReadmeSnippets.RepositoryRoot, "src", "RowLock.Cli");
            await DotnetCli.RunAsync(root.FullName, TimeSpan.FromMinutes(10), "pack", project, "-c", "Release", "-o", feed,
                $"-p:Version={version}", "-p:UseArtifactsOutput=true", $"-p:ArtifactsPath={Path.Combine(root.FullName, "build")}");
            await DotnetCli.RunAsync(root.FullName, TimeSpan.FromMinutes(5), "tool", "install", "RowLock.Cli", "--tool-path", tools, "--add-source", feed, "--version", version);

            var (exit, output) = await RunToolAsync(tools, "--version");
            Assert.Equal(0, exit);
            Assert.Matches($"^{System.Text.RegularExpressions.Regex.Escape(version)}(\\+[0-9a-f]+)?$", output.Trim()); // the package version (+ the commit, when built from git)

            (exit, output) = await RunToolAsync(tools, "key", "x");
            Assert.Equal(0, exit);
            Assert.Contains($"key:      {AdvisoryLockKey.FromName("x").Value}", output, StringComparison.Ordinal);
        }
        finally
        {
            root.Delete(recursive: true);
        }
    }

    private static async Task<(int Exit, string Output)> RunToolAsync(string tools, params string[] arguments)
    {
        var start = new ProcessStartInfo(Path.Combine(tools, "rowlock")) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var patience = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        await process.WaitForExitAsync(patience.Token);
        return (process.ExitCode, await output + await error);
    }
}
