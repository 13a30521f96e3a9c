using System.Globalization;
using Npgsql;

namespace RowLock.Internal;

/// <summary>
/// A write that must affect a stated number of rows (<c>expectedRows</c>), checked by the server before COMMIT: the write
/// runs in a data-modifying CTE and the outer SELECT counts what it returned; on a mismatch it fails (22P02, carrying a
/// tag and the count in the error), which aborts the transaction, so the server skips COMMIT. Nothing depends on a
/// client reading the count in time.
/// </summary>
internal static class RowCountCheck
{
    /// <summary>In the failing value of the mismatch error: <c>invalid input syntax for type integer: "rowlock_unexpected_row_count:0"</c>.</summary>
    private const string Tag = "rowlock_unexpected_row_count:";

    private static readonly string[] Writes = ["insert", "update", "delete"];

    /// <summary>The statement sent for <paramref name="sql"/>; refuses what cannot be counted this way, before anything is sent.</summary>
    public static string Wrap(string sql, int expectedRows, string paramName)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(expectedRows, nameof(expectedRows));
        var tokens = SqlLexer.Tokenize(sql, paramName);
        var first = tokens[0].Kind == SqlTokenKind.Word ? sql.Substring(tokens[0].Start, tokens[0].Length) : string.Empty;
        if (!Writes.Contains(first, StringComparer.OrdinalIgnoreCase))
        {
            throw new ArgumentException(
                "expectedRows applies to one INSERT, UPDATE or DELETE (the server counts the rows it affected before COMMIT); this SQL starts otherwise. " +
                "Move a WITH query into the statement's FROM or USING, or defer it without expectedRows.", paramName);
        }

        var returning = false;
        var depth = 0;
        foreach (var token in tokens)
        {
            depth += token.Kind switch { SqlTokenKind.OpenParen => 1, SqlTokenKind.CloseParen => -1, _ => 0 };
            if (depth == 0 && token.Kind == SqlTokenKind.Word && sql.AsSpan(token.Start, token.Length).Equals("returning", StringComparison.OrdinalIgnoreCase))
            {
                returning = true;
            }
        }

        return string.Create(CultureInfo.InvariantCulture,
            $"WITH rowlock_write AS (\n{sql}\n{(returning ? string.Empty : "RETURNING 1\n")})\nSELECT CASE WHEN count(*) = {expectedRows} THEN 0 ELSE ('{Tag}' || count(*))::int4 END FROM rowlock_write");
    }

    /// <summary>The typed exception when <paramref name="error"/> is the check of <paramref name="write"/> failing; otherwise null.</summary>
    public static UnexpectedRowCountException? Mismatch(PostgresException error, DeferredWrite write)
    {
        if (write.ExpectedRows is not { } expected || error.SqlState != PostgresErrorCodes.InvalidTextRepresentation)
        {
            return null;
        }

        var at = error.MessageText.IndexOf(Tag, StringComparison.Ordinal);
        if (at < 0)
        {
            return null;
        }

        var digits = error.MessageText.AsSpan(at + Tag.Length);
        var end = 0;
        while (end < digits.Length && char.IsAsciiDigit(digits[end]))
        {
            end++;
        }

        var actual = long.Parse(digits[..end], NumberStyles.None, CultureInfo.InvariantCulture);
        return new UnexpectedRowCountException(write.Sql, expected, actual, error);
    }
}
