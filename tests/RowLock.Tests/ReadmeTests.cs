using RowLock.Tests.Infrastructure;

namespace RowLock.Tests;

/// <summary>
/// The C# blocks of README.md and of every guide under docs/ compile as pasted (with their own using lines), so the docs
/// cannot drift from the API; the links between those pages resolve; the Guarantees table names real tests.
/// </summary>
public sealed class ReadmeTests
{
    public static TheoryData<string, int> Blocks
    {
        get
        {
            var data = new TheoryData<string, int>();
            foreach (var block in ReadmeSnippets.AllCSharpBlocks())
            {
                data.Add(block.File, block.Line);
            }

            return data;
        }
    }

    [Theory]
    [MemberData(nameof(Blocks))]
    public void Every_csharp_block_of_the_readme_and_the_guides_compiles_as_pasted(string file, int line)
    {
        var block = ReadmeSnippets.AllCSharpBlocks().Single(b => b.File == file && b.Line == line);

        var errors = ReadmeSnippets.CompileErrors(block);

        Assert.True(errors.Count == 0,
            $"{file} block starting at line {line} does not compile as pasted:\n{string.Join("\n", errors)}\n\nThe block:\n{string.Join("\n", block.Lines)}");
    }

    [Fact]
    public void The_readme_and_the_guides_have_csharp_blocks_to_check()
    {
        Assert.True(ReadmeSnippets.CSharpBlocks(File.ReadAllText(ReadmeSnippets.ReadmePath)).Count >= 4);
        Assert.True(ReadmeSnippets.AllCSharpBlocks().Count >= 20);
        Assert.Contains(ReadmeSnippets.AllCSharpBlocks(), b => b.File == "docs/transaction-runner.md");
    }

    [Fact]
    public void The_readme_stays_a_front_door_under_three_hundred_lines() =>
        Assert.True(File.ReadAllLines(ReadmeSnippets.ReadmePath).Length < 300, "README.md has grown past 300 lines: move the depth into a guide under docs/.");

    [Fact]
    public void Every_relative_link_of_the_readme_and_the_guides_resolves_to_a_file_and_anchor_that_exist()
    {
        var broken = MarkdownLinks.Broken(ReadmeSnippets.RepositoryRoot, ReadmeSnippets.DocumentFiles);

        Assert.True(broken.Count == 0, "Broken links:\n" + string.Join("\n", broken));
    }

    [Fact]
    public void A_link_to_a_missing_file_or_anchor_is_reported()
    {
        var root = Directory.CreateTempSubdirectory("rowlock-links-").FullName;
        try
        {
            Directory.CreateDirectory(Path.Combine(root, "docs"));
            File.WriteAllText(Path.Combine(root, "README.md"), "# Title\n[ok](docs/a.md#the-part) [gone](docs/b.md) [bad anchor](docs/a.md#nope) [here](#title) [web](https://example.com/x.md)\n");
            File.WriteAllText(Path.Combine(root, "docs", "a.md"), "# A\n## The part\n[back](../README.md#title) [self](#missing)\n");

            var broken = MarkdownLinks.Broken(root, ["README.md", "docs/a.md"]);

            Assert.Equal(["README.md: docs/b.md (no such file)", "README.md: docs/a.md#nope (no such heading)", "docs/a.md: #missing (no such heading)"], broken);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public void A_block_without_the_using_lines_it_needs_does_not_compile()
    {
        var withUsings = new CodeBlock(10, ["using Npgsql;", "using RowLock;", "", "await using var dataSource = NpgsqlDataSource.Create(connectionString);", "var runner = new TransactionRunner(dataSource);"]);
        var withoutUsings = new CodeBlock(12, withUsings.Lines.Skip(2).ToList()); // the same README lines, less the two usings

        Assert.Empty(ReadmeSnippets.CompileErrors(withUsings));
        var errors = ReadmeSnippets.CompileErrors(withoutUsings);
        Assert.Contains(errors, e => e.StartsWith("README.md(13,", StringComparison.Ordinal) && e.Contains("NpgsqlDataSource", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.StartsWith("README.md(14,", StringComparison.Ordinal) && e.Contains("TransactionRunner", StringComparison.Ordinal));
    }

    [Fact]
    public void A_block_calling_an_api_that_does_not_exist_does_not_compile()
    {
        var block = new CodeBlock(1, ["using RowLock;", "var clause = RowLockClause.ForUpdate.NoWaitPlease();"]);

        var errors = ReadmeSnippets.CompileErrors(block);

        Assert.Contains(errors, e => e.StartsWith("README.md(2,", StringComparison.Ordinal) && e.Contains("NoWaitPlease", StringComparison.Ordinal));
    }

    /// <summary>
    /// The Guarantees table names the tests that prove each promise: every named class and method must exist, so a
    /// renamed or deleted test cannot leave a promise standing on nothing. Names are looked up in the tests' source. A
    /// name alone (no method) is a class ending in <c>Tests</c>, or a contract family ending in <c>Contract</c>.
    /// </summary>
    [Fact]
    public void Every_test_the_guarantees_table_names_exists()
    {
        var guide = File.ReadAllText(Path.Combine(ReadmeSnippets.RepositoryRoot, "docs", "guarantees.md"));
        var table = guide[guide.IndexOf("# Guarantees", StringComparison.Ordinal)..];
        table = table[..table.IndexOf("**Not guaranteed**", StringComparison.Ordinal)];
        var testsRoot = Path.Combine(ReadmeSnippets.RepositoryRoot, "tests");
        var sources = Directory.EnumerateFiles(testsRoot, "*.cs", SearchOption.AllDirectories)
            .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal))
            .Select(File.ReadAllText).ToList();
        var missing = new List<string>();
        foreach (var row in table.Split('\n').Where(l => l.StartsWith("| ", StringComparison.Ordinal) && !l.StartsWith("| guarantee", StringComparison.Ordinal)))
        {
            var provenBy = row[(row.LastIndexOf(" | ", StringComparison.Ordinal) + 3)..];
            string? currentClass = null;
            foreach (System.Text.RegularExpressions.Match m in System.Text.RegularExpressions.Regex.Matches(provenBy, "`([A-Za-z_][A-Za-z0-9_.]*)`"))
            {
                if (m.Groups[1].Value.All(c => char.IsUpper(c) || char.IsDigit(c) || c == '_'))
                {
                    continue; // an environment variable that sizes a test, e.g. ROWLOCK_STRESS_OPS
                }

                var parts = m.Groups[1].Value.Split('.');
                var (cls, method) = parts.Length == 2 ? (parts[0], parts[1])
                    : char.IsUpper(parts[0][0]) && (parts[0].EndsWith("Tests", StringComparison.Ordinal) || parts[0].EndsWith("Contract", StringComparison.Ordinal)) ? (parts[0], (string?)null)
                    : (currentClass, parts[0]);
                currentClass = cls;
                var declaring = sources.Where(src => src.Contains($"class {cls}", StringComparison.Ordinal)).ToList();
                if (declaring.Count == 0 || (method is not null && !declaring.Any(src => src.Contains($" {method}(", StringComparison.Ordinal))))
                {
                    missing.Add(m.Groups[1].Value + (parts.Length == 1 && method is not null ? $" (in {cls})" : ""));
                }
            }
        }

        Assert.True(missing.Count == 0, "The Guarantees table (docs/guarantees.md) names tests that do not exist: " + string.Join(", ", missing));
    }
}
