using System.Reflection.PortableExecutable;
using System.Text;
using System.Text.RegularExpressions;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;

namespace RowLock.Tests.Infrastructure;

/// <summary>
/// A <c>```csharp</c> block of README.md or a guide under docs/; <see cref="Line"/> is the line of its first code line in
/// <see cref="File"/> (a path relative to the repository root, with forward slashes).
/// </summary>
public sealed record CodeBlock(int Line, IReadOnlyList<string> Lines, string File = "README.md");

/// <summary>
/// Compiles the C# blocks of README.md and docs/*.md against RowLock and the packages a reader installs (Npgsql, Dapper, Polly,
/// Microsoft.Extensions.*), as a reader would paste them into a new project. The block's own <c>using</c> lines are
/// used, never added: only the new project's implicit usings (System, System.Linq, System.Threading.Tasks...) are in
/// scope otherwise. The wrapper supplies the context a reader naturally has around a fragment: an async method body
/// with variables such as <c>dataSource</c>, <c>connection</c>, <c>tx</c>, <c>ct</c>, <c>logger</c>, <c>id</c>, the
/// reader's own methods (<c>SyncRegistryAsync</c>...) and entity types (<c>Stock</c>, <c>Order</c>...).
/// </summary>
public static partial class ReadmeSnippets
{
    // What `dotnet new console` gives every file (ImplicitUsings), and nothing else.
    private const string ImplicitUsings = """
        global using System;
        global using System.Collections.Generic;
        global using System.IO;
        global using System.Linq;
        global using System.Net.Http;
        global using System.Threading;
        global using System.Threading.Tasks;
        """;

    // Variables a fragment may use without declaring them. A block that declares one of these names shadows it.
    private const string ContextParameters = """
        global::Npgsql.NpgsqlDataSource dataSource,
        global::Npgsql.NpgsqlMultiHostDataSource multiHostDataSource,
        global::Npgsql.NpgsqlConnection connection,
        global::Npgsql.NpgsqlTransaction tx,
        global::Npgsql.NpgsqlTransaction transaction,
        string connectionString,
        CancellationToken ct,
        CancellationToken cancellationToken,
        global::Microsoft.Extensions.Logging.ILogger logger,
        global::Microsoft.Extensions.Logging.ILoggerFactory loggerFactory,
        global::RowLock.TransactionRunner runner,
        global::RowLock.AdvisoryLockKey key,
        global::Microsoft.Extensions.DependencyInjection.IServiceCollection services,
        ReaderHostBuilder builder,
        IServiceProvider serviceProvider,
        ShopContext db,
        global::Microsoft.EntityFrameworkCore.IDbContextFactory<ShopContext> contextFactory,
        long id, long orderId, long fromId, long toId, long jobId,
        int from, int to, int user, int userId, int wanted, int quantity, int limit,
        decimal amount,
        string product, string name, string sql,
        object? param,
        TimeSpan timeout,
        string[] args
        """;

    // Methods of the reader's own code that fragments call.
    private const string ContextMembers = """
            private static Task SyncRegistryAsync(params object?[] args) => Task.CompletedTask;
            private static Task SyncIfNotDoneAsync(params object?[] args) => Task.CompletedTask;
            private static Task RunLongJobAsync(params object?[] args) => Task.CompletedTask;
            private static Task TransferAsync(params object?[] args) => Task.CompletedTask;
            private static Task DoWorkAsync(params object?[] args) => Task.CompletedTask;
            private static Task ProcessAsync(params object?[] args) => Task.CompletedTask;
            private static Task SendEmailAsync(params object?[] args) => Task.CompletedTask;
            private static object Conflict(params object?[] args) => args;
            private static object Ok(params object?[] args) => args;
        """;

    // Entity types of the reader's own code that fragments name (declared unless the block declares them itself).
    private static readonly Dictionary<string, string> ContextTypes = new(StringComparer.Ordinal)
    {
        ["Stock"] = "public sealed record Stock(long Id, string Product, int Qty);",
        ["Order"] = "public sealed record Order(long Id, decimal Total, string State);",
        ["Invoice"] = "public sealed record Invoice(long Id, string State);",
        ["Account"] = "public sealed record Account(long Id, decimal Balance);",
        ["Document"] = "public sealed record Document(int Id, string Body);",
        ["Layer"] = "public sealed record Layer(long Id, int RemainingQty);",
        ["Job"] = "public sealed record Job(long Id, string Payload);",
        ["ShopContext"] = "public sealed class ShopContext(global::Microsoft.EntityFrameworkCore.DbContextOptions<ShopContext> options) : global::Microsoft.EntityFrameworkCore.DbContext(options) { public global::Microsoft.EntityFrameworkCore.DbSet<EfOrder> Orders => Set<EfOrder>(); public global::Microsoft.EntityFrameworkCore.DbSet<EfJob> Jobs => Set<EfJob>(); public global::Microsoft.EntityFrameworkCore.DbSet<EfCounter> Counters => Set<EfCounter>(); } public sealed class EfOrder { public long Id { get; set; } } public sealed class EfJob { public long Id { get; set; } public bool Done { get; set; } } public sealed class EfCounter { public int Id { get; set; } public int Value { get; set; } }",
        ["OutOfStockException"] = "public sealed class OutOfStockException : Exception;",
        ["ReaderHostBuilder"] = "public sealed class ReaderHostBuilder { public global::Microsoft.Extensions.DependencyInjection.IServiceCollection Services { get; } = new global::Microsoft.Extensions.DependencyInjection.ServiceCollection(); public global::Microsoft.Extensions.Configuration.IConfigurationManager Configuration { get; } = new global::Microsoft.Extensions.Configuration.ConfigurationManager(); }",
    };

    private static readonly Lazy<IReadOnlyList<MetadataReference>> References = new(LoadReferences);

    /// <summary>The root of the repository this test was built from (found by walking up to RowLock.sln).</summary>
    public static string RepositoryRoot
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            {
                if (File.Exists(Path.Combine(dir.FullName, "RowLock.sln")))
                {
                    return dir.FullName;
                }
            }

            throw new InvalidOperationException($"No RowLock.sln above {AppContext.BaseDirectory}.");
        }
    }

    /// <summary>README.md of the repository this test was built from.</summary>
    public static string ReadmePath => Path.Combine(RepositoryRoot, "README.md");

    /// <summary>README.md and every guide under docs/, as paths relative to the repository root with forward slashes.</summary>
    public static IReadOnlyList<string> DocumentFiles =>
        new[] { "README.md" }
            .Concat(Directory.EnumerateFiles(Path.Combine(RepositoryRoot, "docs"), "*.md", SearchOption.AllDirectories)
                .Select(f => Path.GetRelativePath(RepositoryRoot, f).Replace(Path.DirectorySeparatorChar, '/'))
                .Order(StringComparer.Ordinal))
            .ToList();

    /// <summary>Every C# block of README.md and of the guides under docs/.</summary>
    public static IReadOnlyList<CodeBlock> AllCSharpBlocks() =>
        DocumentFiles.SelectMany(file => CSharpBlocks(File.ReadAllText(Path.Combine(RepositoryRoot, file)), file)).ToList();

    /// <summary>Every <c>```csharp</c> (or <c>```cs</c>, <c>```c#</c>) block of <paramref name="markdown"/>.</summary>
    public static IReadOnlyList<CodeBlock> CSharpBlocks(string markdown, string file = "README.md")
    {
        var lines = markdown.ReplaceLineEndings("\n").Split('\n');
        var blocks = new List<CodeBlock>();
        for (var i = 0; i < lines.Length; i++)
        {
            var fence = lines[i].TrimStart();
            if (!fence.StartsWith("```", StringComparison.Ordinal))
            {
                continue;
            }

            var language = fence[3..].Trim().ToLowerInvariant();
            var indent = lines[i].Length - fence.Length;
            var start = i + 1;
            var end = start;
            while (end < lines.Length && !lines[end].TrimStart().StartsWith("```", StringComparison.Ordinal))
            {
                end++;
            }

            if (language is "csharp" or "cs" or "c#")
            {
                blocks.Add(new CodeBlock(start + 1, lines[start..end].Select(l => l.Length >= indent && string.IsNullOrWhiteSpace(l[..indent]) ? l[indent..] : l).ToList(), file));
            }

            i = end;
        }

        return blocks;
    }

    /// <summary>The file the block is compiled as: its <c>using</c> lines first, its other lines inside the wrapper.</summary>
    public static string Wrap(CodeBlock block)
    {
        var source = new StringBuilder();
        var body = new StringBuilder();
        // A program's own types after its statements (as in a Program.cs) are declared beside the wrapper, not in the body.
        var typesFrom = block.Lines.ToList().FindIndex(l => TypeDeclaration().IsMatch(l));
        var types = new StringBuilder();
        if (typesFrom >= 0)
        {
            types.AppendLine($"#line {block.Line + typesFrom} \"{block.File}\"");
            foreach (var line in block.Lines.Skip(typesFrom))
            {
                types.AppendLine(line);
            }

            types.AppendLine("#line default");
        }

        for (var i = 0; i < (typesFrom >= 0 ? typesFrom : block.Lines.Count); i++)
        {
            var line = block.Lines[i];
            if (UsingDirective().IsMatch(line))
            {
                source.AppendLine($"#line {block.Line + i} \"{block.File}\"").AppendLine(line);
                body.AppendLine(); // keeps the body's lines where README has them
            }
            else
            {
                body.AppendLine(line);
            }
        }

        var code = string.Join("\n", block.Lines);
        source.AppendLine("#line default")
            .AppendLine("internal static class ReaderCode")
            .AppendLine("{")
            .AppendLine("    public static async Task RunAsync(")
            .AppendLine(ContextParameters)
            .AppendLine("    )")
            .AppendLine("    {")
            .AppendLine("        var snippet = async () =>")
            .AppendLine("        {")
            .AppendLine($"#line {block.Line} \"{block.File}\"")
            .Append(body)
            .AppendLine("#line default")
            .AppendLine("            throw new InvalidOperationException(\"the rest of the reader's method\"); // so a fragment may return on some paths only")
            .AppendLine("        };")
            .AppendLine("        await snippet();")
            .AppendLine("    }")
            .AppendLine(ContextMembers)
            .AppendLine("}")
            .Append(types);
        foreach (var (name, declaration) in ContextTypes)
        {
            if (!Regex.IsMatch(code, $@"\b(class|record|struct|interface|enum)\s+{name}\b"))
            {
                source.AppendLine(declaration);
            }
        }

        return source.ToString();
    }

    /// <summary>The compiler errors for <paramref name="block"/>, each as "README.md(line,col): error CSxxxx: message".</summary>
    public static IReadOnlyList<string> CompileErrors(CodeBlock block)
    {
        var parse = new CSharpParseOptions(LanguageVersion.Latest);
        var compilation = CSharpCompilation.Create(
            "ReadmeBlock" + block.Line,
            [CSharpSyntaxTree.ParseText(ImplicitUsings, parse, "GlobalUsings.cs"), CSharpSyntaxTree.ParseText(Wrap(block), parse, "Wrapper.cs")],
            References.Value,
            new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary, nullableContextOptions: NullableContextOptions.Enable));
        return compilation.GetDiagnostics()
            .Where(d => d.Severity == DiagnosticSeverity.Error)
            .Select(d =>
            {
                var span = d.Location.GetMappedLineSpan();
                var where = span.Path == block.File ? $"{block.File}({span.StartLinePosition.Line + 1},{span.StartLinePosition.Character + 1})" : $"wrapper({span.StartLinePosition.Line + 1})";
                return $"{where}: error {d.Id}: {d.GetMessage(System.Globalization.CultureInfo.InvariantCulture)}";
            })
            .ToList();
    }

    /// <summary>
    /// Compiles <paramref name="block"/> as the whole <c>Program.cs</c> of a new console project (top-level statements,
    /// the implicit usings and nothing else) and returns its assembly's bytes; throws with the errors when it does not compile.
    /// </summary>
    public static byte[] CompileProgram(CodeBlock block)
    {
        var parse = new CSharpParseOptions(LanguageVersion.Latest);
        var compilation = CSharpCompilation.Create(
            "ReadmeProgram" + block.Line,
            [CSharpSyntaxTree.ParseText(ImplicitUsings, parse, "GlobalUsings.cs"), CSharpSyntaxTree.ParseText(string.Join("\n", block.Lines), parse, block.File)],
            References.Value,
            new CSharpCompilationOptions(OutputKind.ConsoleApplication, nullableContextOptions: NullableContextOptions.Enable));
        using var image = new MemoryStream();
        var result = compilation.Emit(image);
        if (!result.Success)
        {
            throw new InvalidOperationException($"{block.File} block at line {block.Line} does not compile as a program:\n"
                + string.Join("\n", result.Diagnostics.Where(d => d.Severity == DiagnosticSeverity.Error)));
        }

        return image.ToArray();
    }

    // The framework (the test host's trusted platform assemblies) and everything next to the tests: RowLock, Npgsql,
    // Npgsql.DependencyInjection, Dapper, Polly.Core, Microsoft.Extensions.*.
    private static IReadOnlyList<MetadataReference> LoadReferences()
    {
        var platform = ((string?)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries);
        var local = Directory.GetFiles(AppContext.BaseDirectory, "*.dll");
        return platform.Concat(local)
            .Where(IsManagedAssembly)
            .DistinctBy(Path.GetFileName, StringComparer.OrdinalIgnoreCase)
            .Select(path => (MetadataReference)MetadataReference.CreateFromFile(path))
            .ToList();
    }

    private static bool IsManagedAssembly(string path)
    {
        try
        {
            using var pe = new PEReader(File.OpenRead(path));
            return pe.HasMetadata;
        }
        catch (BadImageFormatException)
        {
            return false;
        }
        catch (IOException)
        {
            return false;
        }
    }

    // "using X;", "using static X;", "using A = X;" (a directive), not "using var x = ..." or "using (...)" (statements).
    [GeneratedRegex(@"^\s*using\s+(static\s+)?([A-Za-z_][\w]*\s*=\s*)?[A-Za-z_][\w.]*(<[^;]*>)?\s*;\s*(//.*)?$")]
    private static partial Regex UsingDirective();

    [GeneratedRegex(@"^(public |internal )?(sealed |static |abstract |partial )*(class|record|struct|interface|enum) ")]
    private static partial Regex TypeDeclaration();
}
