using System.Diagnostics;
using RowLock.Samples.Lab;

namespace RowLock.Tests;

/// <summary>The lab's bad input ends with one clear line and exit code 2, never a stack trace (an unhandled exception is 134 on Linux).</summary>
public sealed class SampleLabCommandLineTests
{
    [Theory]
    [InlineData(new[] { "--workers", "0" }, "--workers needs a positive whole number, not '0'.")]
    [InlineData(new[] { "--iterations", "many" }, "--iterations needs a positive whole number, not 'many'.")]
    [InlineData(new[] { "--workers" }, "--workers needs a value.")]
    [InlineData(new[] { "--wrokers", "4" }, "unknown option '--wrokers'.")]
    [InlineData(new[] { "--scenario", "hot-recrod" }, "no scenario named 'hot-recrod'.")]
    public async Task Bad_input_ends_with_one_line_and_exit_code_2(string[] args, string expected)
    {
        var (exit, output, error) = await RunInProcessAsync(args);

        Assert.Equal(LabProgram.UsageOrConnectionError, exit);
        Assert.Equal("", output);
        var line = Assert.Single(Lines(error));
        Assert.StartsWith("rowlock lab: ", line, StringComparison.Ordinal);
        Assert.Contains(expected, line, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_unreachable_connection_ends_with_one_line_naming_the_server_and_exit_code_2()
    {
        var (exit, output, error) = await RunInProcessAsync(["--connection", UnreachableConnection]);

        Assert.Equal(LabProgram.UsageOrConnectionError, exit);
        Assert.Equal("", output);
        var problem = Assert.Single(Lines(error), l => l.StartsWith("rowlock lab: ", StringComparison.Ordinal));
        Assert.Contains("cannot be reached (127.0.0.1:1)", problem, StringComparison.Ordinal);
        Assert.DoesNotContain(Lines(error), l => l.TrimStart().StartsWith("at ", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Help_prints_the_usage_with_the_exit_codes_and_exits_0()
    {
        var (exit, output, _) = await RunInProcessAsync(["--help"]);

        Assert.Equal(0, exit);
        Assert.Contains("--workers N", output, StringComparison.Ordinal);
        Assert.Contains("2 on a usage error or when no server can be reached", output, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--workers", "0")]
    [InlineData("--connection", UnreachableConnection)]
    public async Task The_built_lab_exits_2_with_no_stack_trace(string option, string value)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "RowLock.Samples.dll"));
        start.ArgumentList.Add(option);
        start.ArgumentList.Add(value);
        start.Environment.Remove("ROWLOCK_CONNECTION");
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var patience = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        await process.WaitForExitAsync(patience.Token);

        Assert.Equal(2, process.ExitCode);
        Assert.DoesNotContain("Unhandled exception", await error, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", await error, StringComparison.Ordinal);
        Assert.Single(Lines(await error), l => l.StartsWith("rowlock lab: ", StringComparison.Ordinal));
        Assert.Equal("", await output);
    }

    // Port 1 on the loopback: nothing listens there, so the connection is refused at once.
    private const string UnreachableConnection = "Host=127.0.0.1;Port=1;Username=nobody;Timeout=5";

    private static async Task<(int Exit, string Output, string Error)> RunInProcessAsync(string[] args)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        var exit = await LabProgram.RunAsync(args, output, error).WaitAsync(TimeSpan.FromSeconds(120));
        return (exit, output.ToString(), error.ToString());
    }

    private static IReadOnlyList<string> Lines(string text) => text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
}
