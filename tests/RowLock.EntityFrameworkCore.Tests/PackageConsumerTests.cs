using System.Globalization;
using RowLock.EntityFrameworkCore.Tests.Infrastructure;
using RowLock.TestServer;

namespace RowLock.EntityFrameworkCore.Tests;

/// <summary>
/// Packs RowLock and RowLock.EntityFrameworkCore into a local folder, restores both by version from there into a fresh
/// console project, and runs a locking EF query against the test server: the packages, not just the projects, work.
/// </summary>
public sealed class PackageConsumerTests(EfFixture ef) : IClassFixture<EfFixture>
{
    [Fact]
    public async Task A_console_app_referencing_both_packed_packages_locks_a_row_through_EF()
    {
        var root = Directory.CreateTempSubdirectory("rowlock-ef-consumer-");
        var version = DotnetCli.VersionPrefix() + "-efconsumer." + DateTime.UtcNow.ToString("yyyyMMddHHmmss", CultureInfo.InvariantCulture);
        try
        {
            var feed = Path.Combine(root.FullName, "feed");
            var app = Path.Combine(root.FullName, "app");
            Directory.CreateDirectory(app);
            foreach (var project in new[] { "RowLock", "RowLock.EntityFrameworkCore" })
            {
                await DotnetAsync(root.FullName, "pack", Path.Combine(RepositoryRoot(), "src", project, project + ".csproj"),
                    "-c", "Release", "-o", feed, $"-p:Version={version}", "-p:ContinuousIntegrationBuild=true");
                Assert.True(File.Exists(Path.Combine(feed, $"{project}.{version}.nupkg")));
            }

            await DotnetCli.WriteConsumerProjectAsync(app, feed, version, "RowLock.EntityFrameworkCore", "RowLock", "RowLock.EntityFrameworkCore");
            await File.WriteAllTextAsync(Path.Combine(app, "Program.cs"), """
                using Microsoft.EntityFrameworkCore;
                using RowLock;
                using RowLock.EntityFrameworkCore;

                var options = new DbContextOptionsBuilder<Shop>().UseNpgsql(args[0]).UseRowLock().Options;
                await using (var db = new Shop(options))
                {
                    await db.Database.ExecuteSqlRawAsync("CREATE TABLE IF NOT EXISTS consumer_items (\"Id\" int PRIMARY KEY, \"Qty\" int NOT NULL); DELETE FROM consumer_items; INSERT INTO consumer_items VALUES (1, 41)");
                }

                var runner = new DbContextTransactionRunner<Shop>(new Factory(options));
                var answer = await runner.RunAsync(async (db, ct) =>
                {
                    var item = await db.Items.Where(i => i.Id == 1).WithRowLock(RowLockClause.ForUpdate.NoWait()).SingleAsync(ct);
                    item.Qty++;
                    return item.Qty;
                });
                Console.WriteLine($"answer={answer}");

                public sealed class Item { public int Id { get; set; } public int Qty { get; set; } }

                public sealed class Shop(DbContextOptions<Shop> options) : DbContext(options)
                {
                    public DbSet<Item> Items => Set<Item>();

                    protected override void OnModelCreating(ModelBuilder b) => b.Entity<Item>().ToTable("consumer_items");
                }

                public sealed class Factory(DbContextOptions<Shop> options) : IDbContextFactory<Shop>
                {
                    public Shop CreateDbContext() => new(options);
                }
                """);

            var output = await DotnetAsync(app, "run", "--", ef.Database.ConnectionString);
            Assert.Contains("answer=42", output, StringComparison.Ordinal);
        }
        finally
        {
            root.Delete(recursive: true);
            foreach (var id in new[] { "rowlock", "rowlock.entityframeworkcore" })
            {
                var cached = Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages", id, version);
                if (Directory.Exists(cached))
                {
                    Directory.Delete(cached, recursive: true);
                }
            }
        }
    }

    private static string RepositoryRoot() => DotnetCli.RepositoryRoot();

    private static Task<string> DotnetAsync(string workingDirectory, params string[] arguments) =>
        DotnetCli.RunAsync(workingDirectory, TimeSpan.FromMinutes(8), arguments);
}
