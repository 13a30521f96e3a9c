using System.Globalization;
using System.Text;

namespace RowLock.EntityFrameworkCore.Internal;

/// <summary>
/// Carries a <see cref="RowLockClause"/> through EF's pipeline as a query tag (tags reach the SQL generator and are part of
/// the query cache key). The generator removes the tag from the SQL; it never reaches the server as a comment.
/// </summary>
internal static class RowLockTag
{
    public const string Prefix = "RowLock.EntityFrameworkCore:";

    /// <summary>Prefix, strength, wait policy, timeout in ticks (or empty), then each table as length:name.</summary>
    public static string Encode(RowLockClause clause)
    {
        var text = new StringBuilder(Prefix)
            .Append((int)clause.Strength).Append('|')
            .Append((int)clause.WaitPolicy).Append('|')
            .Append(clause.Timeout?.Ticks.ToString(CultureInfo.InvariantCulture)).Append('|');
        foreach (var table in clause.Tables)
        {
            text.Append(table.Length.ToString(CultureInfo.InvariantCulture)).Append(':').Append(table);
        }

        return text.ToString();
    }

    public static bool IsRowLockTag(string tag) => tag.StartsWith(Prefix, StringComparison.Ordinal);

    /// <summary>Finds the clause among a query's tags; several WithRowLock calls on one query are refused.</summary>
    public static RowLockClause? Find(IEnumerable<string> tags)
    {
        RowLockClause? found = null;
        foreach (var tag in tags)
        {
            if (!IsRowLockTag(tag))
            {
                continue;
            }

            if (found is not null)
            {
                throw new InvalidOperationException(
                    "WithRowLock was called more than once on one query. PostgreSQL takes one locking clause per SELECT here: pass one RowLockClause (use Of(...) to name several tables).");
            }

            found = Decode(tag);
        }

        return found;
    }

    private static RowLockClause Decode(string tag)
    {
        var parts = tag[Prefix.Length..].Split('|', 4);
        var clause = (LockStrength)int.Parse(parts[0], CultureInfo.InvariantCulture) switch
        {
            LockStrength.Update => RowLockClause.ForUpdate,
            LockStrength.NoKeyUpdate => RowLockClause.ForNoKeyUpdate,
            LockStrength.Share => RowLockClause.ForShare,
            LockStrength.KeyShare => RowLockClause.ForKeyShare,
            var other => throw new InvalidOperationException($"Unknown lock strength {other} in a RowLock query tag."),
        };

        var tables = new List<string>();
        var rest = parts[3];
        while (rest.Length > 0)
        {
            var colon = rest.IndexOf(':', StringComparison.Ordinal);
            var length = int.Parse(rest[..colon], CultureInfo.InvariantCulture);
            tables.Add(rest.Substring(colon + 1, length));
            rest = rest[(colon + 1 + length)..];
        }

        if (tables.Count > 0)
        {
            clause = clause.Of([.. tables]);
        }

        return (LockWaitPolicy)int.Parse(parts[1], CultureInfo.InvariantCulture) switch
        {
            LockWaitPolicy.Wait => clause,
            LockWaitPolicy.NoWait => clause.NoWait(),
            LockWaitPolicy.SkipLocked => clause.SkipLocked(),
            LockWaitPolicy.Timeout => clause.WithTimeout(TimeSpan.FromTicks(long.Parse(parts[2], CultureInfo.InvariantCulture))),
            var other => throw new InvalidOperationException($"Unknown wait policy {other} in a RowLock query tag."),
        };
    }
}
