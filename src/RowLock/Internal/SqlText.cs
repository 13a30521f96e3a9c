namespace RowLock.Internal;

/// <summary>
/// A small scanner for the SELECT statements users hand to the row-lock helpers. It understands string
/// literals (including E'' escapes), quoted identifiers, dollar quotes and comments, so that it finds
/// statement separators and top-level keywords without being fooled by text inside them.
/// </summary>
internal static class SqlText
{
    /// <summary>Checks that <paramref name="sql"/> is one SELECT without a locking clause (and, for claims, without LIMIT).</summary>
    public static void ValidateSelect(string sql, string paramName, bool forbidLimit)
    {
        ArgumentNullException.ThrowIfNull(sql, paramName);
        if (string.IsNullOrWhiteSpace(sql))
        {
            throw new ArgumentException("The SQL is empty. Pass one SELECT statement, without a locking clause.", paramName);
        }

        var scan = Scan(sql, paramName);
        if (scan.Words.Count == 0)
        {
            throw new ArgumentException("The SQL holds no statement (only comments). Pass one SELECT statement.", paramName);
        }

        if (scan.SemicolonAt >= 0)
        {
            throw scan.OnlyTrailingSemicolon
                ? new ArgumentException("Remove the trailing ';': RowLock appends the locking clause to the statement, so it must end with the SELECT itself.", paramName)
                : new ArgumentException("The SQL holds several statements. Pass one SELECT statement; RowLock appends the locking clause to it.", paramName);
        }

        var first = scan.Words[0];
        if (!first.Equals("SELECT", StringComparison.OrdinalIgnoreCase) && !first.Equals("WITH", StringComparison.OrdinalIgnoreCase))
        {
            throw new ArgumentException($"The SQL must be a SELECT (or WITH ... SELECT) statement; it starts with '{first}'.", paramName);
        }

        for (var i = 0; i < scan.Words.Count - 1; i++)
        {
            if (scan.Words[i].Equals("FOR", StringComparison.OrdinalIgnoreCase) && IsLockStrengthStart(scan.Words[i + 1]))
            {
                throw new ArgumentException(
                    "The SQL already has a locking clause (FOR UPDATE / FOR SHARE ...). Remove it and pass the lock as a RowLockClause, so RowLock can add NOWAIT, SKIP LOCKED or a timeout safely.", paramName);
            }

            if (forbidLimit && scan.Words[i].Equals("LIMIT", StringComparison.OrdinalIgnoreCase))
            {
                throw new ArgumentException("The SQL already has a LIMIT. ClaimRowsAsync appends LIMIT itself; pass the batch size as its limit argument.", paramName);
            }
        }

        if (forbidLimit && scan.Words[^1].Equals("LIMIT", StringComparison.OrdinalIgnoreCase))
        {
            throw new ArgumentException("The SQL already has a LIMIT. ClaimRowsAsync appends LIMIT itself; pass the batch size as its limit argument.", paramName);
        }
    }

    private static bool IsLockStrengthStart(string word) =>
        word.Equals("UPDATE", StringComparison.OrdinalIgnoreCase) ||
        word.Equals("SHARE", StringComparison.OrdinalIgnoreCase) ||
        word.Equals("NO", StringComparison.OrdinalIgnoreCase) ||
        word.Equals("KEY", StringComparison.OrdinalIgnoreCase);

    private readonly record struct ScanResult(List<string> Words, int SemicolonAt, bool OnlyTrailingSemicolon);

    /// <summary>Collects the bare words at parenthesis depth 0 and finds the first ';' outside quotes and comments.</summary>
    private static ScanResult Scan(string sql, string paramName)
    {
        var words = new List<string>();
        var semicolonAt = -1;
        var wordsAfterSemicolon = false;
        var depth = 0;
        var i = 0;
        while (i < sql.Length)
        {
            var c = sql[i];
            if (c == '-' && At(sql, i + 1) == '-')
            {
                i = sql.IndexOf('\n', i);
                if (i < 0)
                {
                    break;
                }

                continue;
            }

            if (c == '/' && At(sql, i + 1) == '*')
            {
                i = SkipBlockComment(sql, i, paramName);
                continue;
            }

            if (c == '\'')
            {
                var escapes = i > 0 && (sql[i - 1] is 'E' or 'e') && (i < 2 || !IsWordChar(sql[i - 2]));
                i = SkipQuoted(sql, i, '\'', escapes, paramName);
                continue;
            }

            if (c == '"')
            {
                i = SkipQuoted(sql, i, '"', backslashEscapes: false, paramName);
                continue;
            }

            if (c == '$' && TryDollarTag(sql, i, out var tag))
            {
                var end = sql.IndexOf(tag, i + tag.Length, StringComparison.Ordinal);
                if (end < 0)
                {
                    throw new ArgumentException("The SQL has an unterminated dollar-quoted string.", paramName);
                }

                i = end + tag.Length;
                continue;
            }

            if (c == '(')
            {
                depth++;
            }
            else if (c == ')')
            {
                depth--;
            }
            else if (c == ';')
            {
                if (semicolonAt < 0)
                {
                    semicolonAt = i;
                }
            }
            else if (IsWordStart(c))
            {
                var start = i;
                while (i < sql.Length && IsWordChar(sql[i]))
                {
                    i++;
                }

                if (semicolonAt >= 0)
                {
                    wordsAfterSemicolon = true;
                }
                else if (depth == 0)
                {
                    words.Add(sql[start..i]);
                }

                continue;
            }
            else if (semicolonAt >= 0 && !char.IsWhiteSpace(c))
            {
                wordsAfterSemicolon = true;
            }

            i++;
        }

        return new ScanResult(words, semicolonAt, semicolonAt >= 0 && !wordsAfterSemicolon);
    }

    private static char At(string s, int i) => i < s.Length ? s[i] : '\0';

    private static bool IsWordStart(char c) => char.IsLetter(c) || c == '_';

    private static bool IsWordChar(char c) => char.IsLetterOrDigit(c) || c is '_' or '$';

    private static int SkipBlockComment(string sql, int i, string paramName)
    {
        // PostgreSQL block comments nest.
        var nesting = 0;
        while (i < sql.Length)
        {
            if (sql[i] == '/' && At(sql, i + 1) == '*')
            {
                nesting++;
                i += 2;
            }
            else if (sql[i] == '*' && At(sql, i + 1) == '/')
            {
                nesting--;
                i += 2;
                if (nesting == 0)
                {
                    return i;
                }
            }
            else
            {
                i++;
            }
        }

        throw new ArgumentException("The SQL has an unterminated /* comment; the locking clause appended after it would be ignored.", paramName);
    }

    private static int SkipQuoted(string sql, int i, char quote, bool backslashEscapes, string paramName)
    {
        i++;
        while (i < sql.Length)
        {
            var c = sql[i];
            if (backslashEscapes && c == '\\')
            {
                i += 2;
                continue;
            }

            if (c == quote)
            {
                if (At(sql, i + 1) == quote)
                {
                    i += 2;
                    continue;
                }

                return i + 1;
            }

            i++;
        }

        throw new ArgumentException(quote == '\''
            ? "The SQL has an unterminated string literal."
            : "The SQL has an unterminated quoted identifier.", paramName);
    }

    /// <summary>A dollar quote is $$ or $tag$ where tag does not start with a digit ($1 is a parameter).</summary>
    private static bool TryDollarTag(string sql, int i, out string tag)
    {
        tag = "";
        if (i > 0 && IsWordChar(sql[i - 1]))
        {
            return false;
        }

        var j = i + 1;
        if (j < sql.Length && char.IsDigit(sql[j]))
        {
            return false;
        }

        while (j < sql.Length && (char.IsLetterOrDigit(sql[j]) || sql[j] == '_'))
        {
            j++;
        }

        if (j < sql.Length && sql[j] == '$')
        {
            tag = sql[i..(j + 1)];
            return true;
        }

        return false;
    }
}
