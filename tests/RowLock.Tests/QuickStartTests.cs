using System.Reflection;
using System.Runtime.Loader;
using RowLock.Tests.Infrastructure;

namespace RowLock.Tests;

/// <summary>README's quick start runs as pasted: its CREATE TABLE, then its Program.cs, compiled as a console program.</summary>
public sealed class QuickStartTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    [Fact]
    public async Task The_quick_start_runs_as_pasted_and_concurrent_runs_never_oversell()
    {
        var (createTable, program) = QuickStartBlocks();
        await db.ExecuteAsync(createTable);
        var entryPoint = LoadEntryPoint(ReadmeSnippets.CompileProgram(program));

        // 40 copies of the program at once against 100 in stock, 3 each: 33 sell, 7 are told it is out of stock.
        var runs = Enumerable.Range(0, 40).Select(_ => Task.Run(() =>
        {
            try
            {
                entryPoint.Invoke(null, [new[] { db.ConnectionString }]);
                return "sold";
            }
            catch (TargetInvocationException e) when (e.InnerException is InvalidOperationException { Message: "Out of stock." })
            {
                return "out of stock";
            }
        })).ToList();
        var outcomes = await Task.WhenAll(runs).WaitAsync(TimeSpan.FromSeconds(120));

        Assert.Equal(33, outcomes.Count(o => o == "sold"));
        Assert.Equal(7, outcomes.Count(o => o == "out of stock"));
        Assert.Equal(1, await db.ScalarAsync<int>("SELECT qty FROM stock WHERE id = 1"));
    }

    private static (string Sql, CodeBlock Program) QuickStartBlocks()
    {
        var readme = File.ReadAllText(ReadmeSnippets.ReadmePath).ReplaceLineEndings("\n");
        var start = readme.IndexOf("\n## Quick start\n", StringComparison.Ordinal);
        var end = readme.IndexOf("\n## ", start + 1, StringComparison.Ordinal);
        Assert.True(start >= 0 && end > start, "README.md has no Quick start section.");
        var section = readme[start..end];
        var sqlStart = section.IndexOf("```sql\n", StringComparison.Ordinal) + "```sql\n".Length;
        var sql = section[sqlStart..section.IndexOf("```", sqlStart, StringComparison.Ordinal)];
        var line = readme[..start].Count(c => c == '\n') + 1;
        var program = ReadmeSnippets.CSharpBlocks(readme).Single(b => b.Line > line && b.Line < line + section.Count(c => c == '\n'));
        return (sql, program);
    }

    private static MethodInfo LoadEntryPoint(byte[] image)
    {
        // RowLock, Npgsql and Dapper resolve from the test's own context (the load context falls back to it).
        var context = new AssemblyLoadContext("readme-quick-start", isCollectible: true);
        return context.LoadFromStream(new MemoryStream(image)).EntryPoint ?? throw new InvalidOperationException("The program has no entry point.");
    }
}
