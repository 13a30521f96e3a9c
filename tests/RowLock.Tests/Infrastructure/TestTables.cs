using System.Text.RegularExpressions;

namespace RowLock.Tests.Infrastructure;

/// <summary>
/// Table names for tests: a readable prefix and a random suffix, so that tests sharing a database (and contract runs
/// sharing a server) never see each other's tables. Lower-case letters, digits and underscores only, so a name can be
/// spliced into SQL text as it is, without quoting.
/// </summary>
public static partial class TestTables
{
    /// <summary>A new name such as <c>stock_1f3a9c2e</c>.</summary>
    /// <exception cref="ArgumentException"><paramref name="prefix"/> is not a short lower-case identifier.</exception>
    public static string Unique(string prefix)
    {
        if (!SafePrefix().IsMatch(prefix))
        {
            throw new ArgumentException($"'{prefix}' is not a lower-case identifier of at most 40 characters: the name would need quoting.", nameof(prefix));
        }

        return prefix + "_" + Guid.NewGuid().ToString("N")[..8];
    }

    [GeneratedRegex("^[a-z][a-z0-9_]{0,39}$")]
    private static partial Regex SafePrefix();
}
