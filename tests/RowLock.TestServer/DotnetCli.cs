using System.Diagnostics;

namespace RowLock.TestServer;

/// <summary>Runs the <c>dotnet</c> CLI from tests that pack the packages and build consumer apps against them.</summary>
public static class DotnetCli
{
    /// <summary>The folder holding RowLock.sln, found above the test binaries.</summary>
    public static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "RowLock.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException("RowLock.sln not found above the test binaries.");
    }

    /// <summary>The repository's version (Directory.Build.props' VersionPrefix), e.g. "0.2.0".</summary>
    public static string VersionPrefix()
    {
        var props = File.ReadAllText(Path.Combine(RepositoryRoot(), "Directory.Build.props"));
        var start = props.IndexOf("<VersionPrefix>", StringComparison.Ordinal) + "<VersionPrefix>".Length;
        return props[start..props.IndexOf("</VersionPrefix>", start, StringComparison.Ordinal)].Trim();
    }

    /// <summary>Runs <c>dotnet arguments</c> without build servers; throws with the whole output when it exits non-zero.</summary>
    public static async Task<string> RunAsync(string workingDirectory, TimeSpan timeout, params string[] arguments)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        start.Environment["MSBUILDDISABLENODEREUSE"] = "1";
        start.Environment["DOTNET_CLI_USE_MSBUILD_SERVER"] = "0";
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var cancel = new CancellationTokenSource(timeout);
        await process.WaitForExitAsync(cancel.Token).ConfigureAwait(false);
        var output = await stdout.ConfigureAwait(false) + await stderr.ConfigureAwait(false);
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"dotnet {string.Join(' ', arguments)} failed:\n{output}");
        }

        return output;
    }

    /// <summary>
    /// Writes a console project into <paramref name="app"/> that references <paramref name="packageReference"/> at
    /// <paramref name="version"/> and restores <paramref name="localPackages"/> only from <paramref name="feed"/> (everything
    /// else from nuget.org), shielded from the repository's own Directory.*.props. Program.cs is the caller's.
    /// </summary>
    public static async Task WriteConsumerProjectAsync(string app, string feed, string version, string packageReference, params string[] localPackages)
    {
        var patterns = string.Concat(localPackages.Select(package => $"<package pattern=\"{package}\" />"));
        await File.WriteAllTextAsync(Path.Combine(app, "nuget.config"), $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration>
              <packageSources>
                <clear />
                <add key="local" value="{feed}" />
                <add key="nuget" value="https://api.nuget.org/v3/index.json" />
              </packageSources>
              <packageSourceMapping>
                <packageSource key="local">{patterns}</packageSource>
                <packageSource key="nuget"><package pattern="*" /></packageSource>
              </packageSourceMapping>
            </configuration>
            """).ConfigureAwait(false);
        await File.WriteAllTextAsync(Path.Combine(app, "Directory.Build.props"), "<Project />").ConfigureAwait(false);
        await File.WriteAllTextAsync(Path.Combine(app, "Directory.Packages.props"), "<Project />").ConfigureAwait(false);
        await File.WriteAllTextAsync(Path.Combine(app, "Consumer.csproj"), $"""
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup>
                <OutputType>Exe</OutputType>
                <TargetFramework>net10.0</TargetFramework>
                <Nullable>enable</Nullable>
                <ImplicitUsings>enable</ImplicitUsings>
                <TreatWarningsAsErrors>true</TreatWarningsAsErrors>
              </PropertyGroup>
              <ItemGroup>
                <PackageReference Include="{packageReference}" Version="{version}" />
              </ItemGroup>
            </Project>
            """).ConfigureAwait(false);
    }
}
