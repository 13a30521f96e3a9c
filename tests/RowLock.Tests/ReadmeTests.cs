using RowLock.Tests.Infrastructure;

namespace RowLock.Tests;

/// <summary>README's C# blocks compile as pasted (with their own using lines), so the docs cannot drift from the API.</summary>
public sealed class ReadmeTests
{
    public static TheoryData<int> Blocks => new(ReadmeSnippets.CSharpBlocks(File.ReadAllText(ReadmeSnippets.ReadmePath)).Select(b => b.Line));

    [Theory]
    [MemberData(nameof(Blocks))]
    public void Every_csharp_block_of_the_readme_compiles_as_pasted(int line)
    {
        var block = ReadmeSnippets.CSharpBlocks(File.ReadAllText(ReadmeSnippets.ReadmePath)).Single(b => b.Line == line);

        var errors = ReadmeSnippets.CompileErrors(block);

        Assert.True(errors.Count == 0,
            $"README.md block starting at line {line} does not compile as pasted:\n{string.Join("\n", errors)}\n\nThe block:\n{string.Join("\n", block.Lines)}");
    }

    [Fact]
    public void The_readme_has_csharp_blocks_to_check() =>
        Assert.True(ReadmeSnippets.CSharpBlocks(File.ReadAllText(ReadmeSnippets.ReadmePath)).Count >= 10);

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
        var readme = File.ReadAllText(ReadmeSnippets.ReadmePath);
        var table = readme[readme.IndexOf("## Guarantees", StringComparison.Ordinal)..];
        table = table[..table.IndexOf("**Not guaranteed**", StringComparison.Ordinal)];
        var testsRoot = Path.Combine(Path.GetDirectoryName(ReadmeSnippets.ReadmePath)!, "tests");
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

        Assert.True(missing.Count == 0, "The Guarantees table names tests that do not exist: " + string.Join(", ", missing));
    }
}
