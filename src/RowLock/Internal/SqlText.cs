using Npgsql;

namespace RowLock.Internal;

/// <summary>
/// Checks, before anything is sent, the SELECT a lock helper is about to append a locking clause to. The SQL is
/// tokenized the way PostgreSQL does it (<see cref="SqlLexer"/>), then checked by <see cref="LockedSelectRules"/>
/// against PostgreSQL's rules for "The Locking Clause": one statement, no data-modifying statement anywhere, no
/// shape PostgreSQL refuses with the clause, and no rows the clause would silently not lock.
/// </summary>
internal static class SqlText
{
    /// <summary>
    /// Throws <see cref="ArgumentException"/> (named <paramref name="paramName"/>) unless <paramref name="sql"/> is one
    /// SELECT that <paramref name="clause"/> can be appended to and that then locks the rows it returns.
    /// </summary>
    /// <param name="sql">The caller's SELECT.</param>
    /// <param name="paramName">The parameter name reported in the exception.</param>
    /// <param name="clause">The clause to be appended; its OF list and wait policy matter.</param>
    /// <param name="claim">True for ClaimRowsAsync, which appends LIMIT n itself.</param>
    /// <returns>The relations the clause reaches, quoted, for the server check of views (<see cref="ServerShapeCheck"/>).</returns>
    public static IReadOnlyList<string> ValidateSelect(string sql, string paramName, RowLockClause clause, bool claim)
    {
        var tokens = Tokenize(sql, paramName, "one SELECT statement", ", without a locking clause");

        var of = clause.Tables;
        return new LockedSelectRules(sql, tokens, paramName, of.Count == 0 ? null : of, claim, clause.WaitPolicy == LockWaitPolicy.SkipLocked).Check();
    }

    /// <summary>
    /// Checks a view's definition (from pg_get_viewdef) as PostgreSQL applies a locking clause to it: pushed down with no
    /// OF list, so every rule holds for it and every relation it reads must be lockable. Returns those relations.
    /// </summary>
    public static IReadOnlyList<string> ValidateViewDefinition(string definition, string paramName)
    {
        var trimmed = definition.AsSpan().TrimEnd();
        if (trimmed.EndsWith(";", StringComparison.Ordinal))
        {
            trimmed = trimmed[..^1];
        }

        var sql = trimmed.ToString();
        var tokens = Tokenize(sql, paramName, "a view definition", "");
        return new LockedSelectRules(sql, tokens, paramName, null, claim: false, skipLocked: false).Check();
    }

    /// <summary>
    /// Throws <see cref="ArgumentException"/> (named <paramref name="paramName"/>) unless <paramref name="sql"/> is one
    /// statement that can run in a batch before the commit: no ';' (Npgsql would split it, and each batch command holds
    /// one statement) and no transaction control, which would end the transaction before its COMMIT.
    /// </summary>
    public static void ValidateWrite(string sql, string paramName)
    {
        var tokens = Tokenize(sql, paramName, "one statement", ", e.g. an UPDATE");

        foreach (var token in tokens)
        {
            if (token.Kind == SqlTokenKind.Semicolon)
            {
                throw new ArgumentException(
                    "The SQL has a ';'. Pass one statement without a trailing ';'; for several writes, call the method once per statement.", paramName);
            }
        }

        var first = tokens[0].Kind == SqlTokenKind.Word ? sql.AsSpan(tokens[0].Start, tokens[0].Length) : default;
        foreach (var control in TransactionControl)
        {
            if (first.Equals(control, StringComparison.OrdinalIgnoreCase))
            {
                throw new ArgumentException(
                    $"The SQL starts with {control.ToUpperInvariant()}, which controls the transaction. The write is sent just before COMMIT, which RowLock sends itself; pass a data-changing statement.", paramName);
            }
        }

        // COPY FROM STDIN waits for data and COPY TO STDOUT streams it: neither can run in a batch ahead of COMMIT, and
        // Npgsql would break the connection with the COMMIT sent, an unknown outcome.
        if (first.Equals("copy", StringComparison.OrdinalIgnoreCase))
        {
            throw new ArgumentException(
                "The SQL is a COPY, which cannot travel in a batch with COMMIT. Send it on the transaction before (NpgsqlConnection.BeginBinaryImport and friends) and pass a data-changing statement here.", paramName);
        }
    }

    /// <summary>The tokens of <paramref name="sql"/>; refuses null, empty and comment-only SQL, saying what to pass instead.</summary>
    private static List<SqlToken> Tokenize(string sql, string paramName, string expected, string detail)
    {
        ArgumentNullException.ThrowIfNull(sql, paramName);
        if (string.IsNullOrWhiteSpace(sql))
        {
            throw new ArgumentException($"The SQL is empty. Pass {expected}{detail}.", paramName);
        }

        var tokens = SqlLexer.Tokenize(sql, paramName);
        if (tokens.Count == 0)
        {
            throw new ArgumentException($"The SQL holds no statement (only comments). Pass {expected}.", paramName);
        }

        return tokens;
    }

    /// <summary>Statements that begin, end or split a transaction (PREPARE TRANSACTION included: PREPARE is refused whole).</summary>
    private static readonly string[] TransactionControl = ["begin", "start", "commit", "end", "rollback", "abort", "savepoint", "release", "prepare"];

    /// <summary>
    /// Throws <see cref="ArgumentException"/> when the session reads strings differently from <see cref="SqlLexer"/>:
    /// with standard_conforming_strings off, PostgreSQL and Npgsql take backslash escapes in '...' strings, so a \'
    /// the lexer reads as a backslash and the end of a string keeps the string going for them (and a ';' after it
    /// splits the statement). SQL without a backslash reads the same either way.
    /// </summary>
    public static void ValidateForSession(string sql, string paramName, NpgsqlConnection connection)
    {
        if (sql.Contains('\\', StringComparison.Ordinal)
            && connection.PostgresParameters.TryGetValue("standard_conforming_strings", out var conforming)
            && !string.Equals(conforming, "on", StringComparison.OrdinalIgnoreCase))
        {
            throw new ArgumentException(
                "The SQL has a backslash and the session has standard_conforming_strings off, so '...' strings take backslash escapes and RowLock cannot check where they end. "
                + "Turn standard_conforming_strings on (the default), or pass the value with the backslash as a parameter.", paramName);
        }
    }
}
