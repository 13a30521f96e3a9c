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
}
