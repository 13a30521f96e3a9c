using RowLock.Tests.Infrastructure;
using RowLock.TestServer;

namespace RowLock.Tests;

/// <summary>
/// Packs the library, restores it by version from that folder only into a fresh console project, builds it and runs a
/// unit of work against the test server: proves the package, not just the project, works.
/// </summary>
public sealed class PackageConsumerTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    [Fact]
    public async Task A_console_app_referencing_the_packed_package_runs_a_unit_of_work()
    {
        var root = Directory.CreateTempSubdirectory("rowlock-consumer-");
        var version = DotnetCli.VersionPrefix() + "-consumertest." + DateTime.UtcNow.ToString("yyyyMMddHHmmss", System.Globalization.CultureInfo.InvariantCulture);
        try
        {
            var feed = Path.Combine(root.FullName, "feed");
            var app = Path.Combine(root.FullName, "app");
            Directory.CreateDirectory(app);
            var project = Path.Combine(RepositoryRoot(), "src", "RowLock", "RowLock.csproj");
            await DotnetAsync(root.FullName, "pack", project, "-c", "Release", "-o", feed, $"-p:Version={version}", "-p:ContinuousIntegrationBuild=true");
            Assert.True(File.Exists(Path.Combine(feed, $"RowLock.{version}.nupkg")));
            Assert.True(File.Exists(Path.Combine(feed, $"RowLock.{version}.snupkg")));
            AssertReadmeLinksResolveOnThePackagePage(Path.Combine(feed, $"RowLock.{version}.nupkg"));

            await DotnetCli.WriteConsumerProjectAsync(app, feed, version, "RowLock", "RowLock");
            await File.WriteAllTextAsync(Path.Combine(app, "Program.cs"), """
                using Npgsql;
                using RowLock;

                await using var dataSource = NpgsqlDataSource.Create(args[0]);
                await using (var setup = dataSource.CreateCommand("CREATE TABLE IF NOT EXISTS consumer_answer (id int PRIMARY KEY, v int NOT NULL); INSERT INTO consumer_answer VALUES (1, 41) ON CONFLICT DO NOTHING"))
                {
                    await setup.ExecuteNonQueryAsync();
                }

                var runner = new TransactionRunner(dataSource);
                var answer = await runner.RunAsync(async (tx, ct) =>
                {
                    var rows = await tx.LockRowsAsync<int>("SELECT v + 1 FROM consumer_answer WHERE id = 1", null, RowLockClause.ForUpdate, ct);
                    var mine = await tx.TryAcquireAdvisoryLockAsync(AdvisoryLockKey.FromName("consumer"), cancellationToken: ct);
                    return mine ? rows[0] : -1;
                });
                Console.WriteLine($"answer={answer}");
                """);

            var output = await DotnetAsync(app, "run", "--", db.ConnectionString);
            Assert.Contains("answer=42", output, StringComparison.Ordinal);
        }
        finally
        {
            root.Delete(recursive: true);
            var cached = Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages", "rowlock", version);
            if (Directory.Exists(cached))
            {
                Directory.Delete(cached, recursive: true);
            }
        }
    }

    private static string RepositoryRoot() => DotnetCli.RepositoryRoot();

    /// <summary>The package page has no repository around it: the packed README's links must all be absolute (or anchors).</summary>
    private static void AssertReadmeLinksResolveOnThePackagePage(string nupkg)
    {
        using var package = System.IO.Compression.ZipFile.OpenRead(nupkg);
        using var reader = new StreamReader(package.GetEntry("README.md")!.Open());
        var readme = reader.ReadToEnd();
        var links = MarkdownLinks.Links(readme);

        Assert.Contains("https://github.com/rowlock/rowlock/blob/main/docs/row-locks.md", links);
        Assert.All(links, link => Assert.True(link.StartsWith("https://", StringComparison.Ordinal) || link.StartsWith('#'), $"relative link in the packed README: {link}"));
        Assert.Equal(MarkdownLinks.Links(File.ReadAllText(ReadmeSnippets.ReadmePath)).Count, links.Count); // the same README, links rewritten
    }

    private static Task<string> DotnetAsync(string workingDirectory, params string[] arguments) =>
        DotnetCli.RunAsync(workingDirectory, TimeSpan.FromMinutes(15), arguments); // a guard only: on a saturated machine a pack takes minutes
}
