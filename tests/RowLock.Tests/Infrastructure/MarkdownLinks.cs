using System.Text;
using System.Text.RegularExpressions;

namespace RowLock.Tests.Infrastructure;

/// <summary>
/// Finds the relative links of markdown pages (<c>[text](path#anchor)</c>, outside code) whose file, or whose heading
/// anchor, does not exist. Anchors are made from headings as GitHub makes them: lower case, punctuation dropped, spaces
/// as hyphens, a repeated heading suffixed <c>-1</c>, <c>-2</c>...
/// </summary>
public static partial class MarkdownLinks
{
    /// <summary>Each broken link as "file: target (reason)", in the order the files and links appear.</summary>
    public static IReadOnlyList<string> Broken(string root, IEnumerable<string> files)
    {
        var broken = new List<string>();
        foreach (var file in files)
        {
            var path = Path.Combine(root, file);
            foreach (var target in Links(File.ReadAllText(path)))
            {
                if (target.Contains("://", StringComparison.Ordinal) || target.StartsWith("mailto:", StringComparison.Ordinal))
                {
                    continue;
                }

                var hash = target.IndexOf('#', StringComparison.Ordinal);
                var (relative, anchor) = hash < 0 ? (target, null) : (target[..hash], target[(hash + 1)..]);
                var resolved = relative.Length == 0 ? path : Path.GetFullPath(Path.Combine(Path.GetDirectoryName(path)!, Uri.UnescapeDataString(relative)));
                if (!File.Exists(resolved) && !Directory.Exists(resolved))
                {
                    broken.Add($"{file}: {target} (no such file)");
                }
                else if (anchor is not null && (!resolved.EndsWith(".md", StringComparison.OrdinalIgnoreCase) || !Anchors(File.ReadAllText(resolved)).Contains(anchor)))
                {
                    broken.Add($"{file}: {target} (no such heading)");
                }
            }
        }

        return broken;
    }

    /// <summary>The targets of the inline links of <paramref name="markdown"/>, skipping fenced code and inline code.</summary>
    public static IReadOnlyList<string> Links(string markdown)
    {
        var targets = new List<string>();
        foreach (var line in Prose(markdown))
        {
            var withoutCode = InlineCode().Replace(line, "");
            targets.AddRange(Link().Matches(withoutCode).Select(m => m.Groups[1].Value));
        }

        return targets;
    }

    /// <summary>The anchors GitHub gives the headings of <paramref name="markdown"/>.</summary>
    public static IReadOnlySet<string> Anchors(string markdown)
    {
        var anchors = new HashSet<string>(StringComparer.Ordinal);
        var seen = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var line in Prose(markdown))
        {
            var heading = Heading().Match(line);
            if (!heading.Success)
            {
                continue;
            }

            var slug = Slug(heading.Groups[1].Value);
            var count = seen.GetValueOrDefault(slug);
            seen[slug] = count + 1;
            anchors.Add(count == 0 ? slug : $"{slug}-{count}");
        }

        return anchors;
    }

    private static string Slug(string heading)
    {
        var text = LinkText().Replace(heading.Trim(), "$1");
        var slug = new StringBuilder();
        foreach (var c in text.ToLowerInvariant())
        {
            if (char.IsLetterOrDigit(c) || c is '-' or '_')
            {
                slug.Append(c);
            }
            else if (c == ' ')
            {
                slug.Append('-');
            }
        }

        return slug.ToString();
    }

    private static IEnumerable<string> Prose(string markdown)
    {
        var inFence = false;
        foreach (var line in markdown.ReplaceLineEndings("\n").Split('\n'))
        {
            if (line.TrimStart().StartsWith("```", StringComparison.Ordinal))
            {
                inFence = !inFence;
                continue;
            }

            if (!inFence)
            {
                yield return line;
            }
        }
    }

    [GeneratedRegex(@"`[^`]*`")]
    private static partial Regex InlineCode();

    [GeneratedRegex(@"\]\(([^)\s]+)(?:\s+""[^""]*"")?\)")]
    private static partial Regex Link();

    [GeneratedRegex(@"^#{1,6}\s+(.+?)\s*#*\s*$")]
    private static partial Regex Heading();

    [GeneratedRegex(@"\[([^\]]*)\]\([^)]*\)")]
    private static partial Regex LinkText();
}
