namespace RowLock.Internal;

/// <summary>The kinds of token the lexer tells apart; comments and whitespace are dropped.</summary>
internal enum SqlTokenKind : byte
{
    /// <summary>An unquoted identifier or keyword.</summary>
    Word,

    /// <summary>A "quoted" or U&amp;"quoted" identifier.</summary>
    QuotedIdentifier,

    /// <summary>A '...', E'...', U&amp;'...', B'...', X'...' or N'...' string, or a $tag$...$tag$ string.</summary>
    String,

    /// <summary>A numeric literal.</summary>
    Number,

    /// <summary>A positional parameter such as $1.</summary>
    Parameter,
    OpenParen,
    CloseParen,
    Comma,
    Semicolon,
    Dot,

    /// <summary>Any other operator or punctuation character (one token per character).</summary>
    Operator,
}

/// <summary>One token: where it is in the SQL and, for parentheses, the index of the matching one.</summary>
internal struct SqlToken
{
    public SqlTokenKind Kind;
    public int Start;
    public int Length;

    /// <summary>For '(' and ')': the index of the matching parenthesis token; otherwise -1.</summary>
    public int Match;
}

/// <summary>
/// Splits SQL into tokens the way PostgreSQL's lexer (scan.l) does for everything that decides where a statement,
/// a string or a comment ends: <c>--</c> comments end at <c>\n</c> or <c>\r</c>; block comments nest; '' doubles
/// a quote; E'' strings take backslash escapes; "" doubles a quote in identifiers; a dollar quote's tag is a
/// letter, '_' or any non-ASCII character followed by those or digits (<c>$1</c> is a parameter, not a tag);
/// identifiers may hold '$' and any non-ASCII character. It assumes standard_conforming_strings = on (the default
/// since PostgreSQL 9.1). Where Npgsql (which splits the text into statements before PostgreSQL sees it) reads
/// less than PostgreSQL, here a dollar-quote tag with a character beyond U+00FF, the SQL is refused.
/// </summary>
internal static class SqlLexer
{
    /// <summary>Tokenizes <paramref name="sql"/>; throws ArgumentException for an unterminated string, identifier or comment.</summary>
    public static List<SqlToken> Tokenize(string sql, string paramName)
    {
        var tokens = new List<SqlToken>(Math.Min(256, (sql.Length / 4) + 4));
        var i = 0;
        while (i < sql.Length)
        {
            var c = sql[i];
            if (IsSpace(c))
            {
                i++;
                continue;
            }

            if (c == '-' && At(sql, i + 1) == '-')
            {
                // PostgreSQL: comment = "--" non_newline*, non_newline = [^\n\r].
                i += 2;
                while (i < sql.Length && sql[i] is not ('\n' or '\r'))
                {
                    i++;
                }

                continue;
            }

            if (c == '/' && At(sql, i + 1) == '*')
            {
                i = SkipBlockComment(sql, i, paramName);
                continue;
            }

            var start = i;
            SqlTokenKind kind;
            if (c == '\'')
            {
                i = SkipQuoted(sql, i, '\'', backslashEscapes: false, paramName);
                kind = SqlTokenKind.String;
            }
            else if (c == '"')
            {
                i = SkipQuoted(sql, i, '"', backslashEscapes: false, paramName);
                kind = SqlTokenKind.QuotedIdentifier;
            }
            else if (IsIdentStart(c))
            {
                if (At(sql, i + 1) == '\'' && c is 'E' or 'e')
                {
                    RefuseEscapeStringNpgsqlMisreads(sql, i, paramName);
                    i = SkipQuoted(sql, i + 1, '\'', backslashEscapes: true, paramName);
                    RefuseEscapeStringContinuation(sql, i, paramName);
                    kind = SqlTokenKind.String;
                }
                else if (At(sql, i + 1) == '\'' && c is 'B' or 'b' or 'X' or 'x' or 'N' or 'n')
                {
                    i = SkipQuoted(sql, i + 1, '\'', backslashEscapes: false, paramName);
                    kind = SqlTokenKind.String;
                }
                else if (c is 'U' or 'u' && At(sql, i + 1) == '&' && At(sql, i + 2) is '\'' or '"')
                {
                    var quote = sql[i + 2];
                    i = SkipQuoted(sql, i + 2, quote, backslashEscapes: false, paramName);
                    kind = quote == '\'' ? SqlTokenKind.String : SqlTokenKind.QuotedIdentifier;
                }
                else
                {
                    i++;
                    while (i < sql.Length && IsIdentCont(sql[i]))
                    {
                        i++;
                    }

                    kind = SqlTokenKind.Word;
                }
            }
            else if (IsDigit(c) || (c == '.' && IsDigit(At(sql, i + 1))))
            {
                // Digits, a decimal point, an exponent, and (PostgreSQL 15 rejects it anyway) trailing identifier junk.
                i++;
                while (i < sql.Length && (IsDigit(sql[i]) || sql[i] == '.' || IsIdentStart(sql[i])))
                {
                    i++;
                }

                kind = SqlTokenKind.Number;
            }
            else if (c == '$')
            {
                if (IsDigit(At(sql, i + 1)))
                {
                    i++;
                    while (i < sql.Length && IsDigit(sql[i]))
                    {
                        i++;
                    }

                    kind = SqlTokenKind.Parameter;
                }
                else if (TryDollarTag(sql, i, out var tagLength))
                {
                    var tag = sql.AsSpan(i, tagLength);
                    if (tag.ContainsAnyInRange('\u0100', '\uffff'))
                    {
                        // PostgreSQL takes any non-ASCII letter; Npgsql's own statement splitter only U+0080..U+00FF, so it
                        // would not see this quote and would split the statement at a ';' (or bind an @name) inside it.
                        throw new ArgumentException(
                            $"The SQL has the dollar-quote tag '{tag}', with a character beyond U+00FF that Npgsql does not read as part of a tag (it would split the statement at a ';' inside the quote). "
                            + "Use a tag of ASCII letters, digits and '_', such as $body$.", paramName);
                    }

                    var end = sql.AsSpan(i + tagLength).IndexOf(sql.AsSpan(i, tagLength), StringComparison.Ordinal);
                    if (end < 0)
                    {
                        throw new ArgumentException("The SQL has an unterminated dollar-quoted string.", paramName);
                    }

                    i += tagLength + end + tagLength;
                    kind = SqlTokenKind.String;
                }
                else
                {
                    i++;
                    kind = SqlTokenKind.Operator;
                }
            }
            else
            {
                i++;
                kind = c switch
                {
                    '(' => SqlTokenKind.OpenParen,
                    ')' => SqlTokenKind.CloseParen,
                    ',' => SqlTokenKind.Comma,
                    ';' => SqlTokenKind.Semicolon,
                    '.' => SqlTokenKind.Dot,
                    _ => SqlTokenKind.Operator,
                };
            }

            tokens.Add(new SqlToken { Kind = kind, Start = start, Length = i - start, Match = -1 });
        }

        return tokens;
    }

    /// <summary>
    /// Npgsql reads '@' or ':' followed by letters, digits, '_' and '.' as a named parameter, so for it the E of an
    /// E'' string right after them (<c>&lt;@e'..'</c>, <c>:e'..'</c>, <c>@x.e'..'</c>) starts a plain string without
    /// backslash escapes: the two would end the string at different quotes.
    /// </summary>
    private static void RefuseEscapeStringNpgsqlMisreads(string sql, int e, string paramName)
    {
        var j = e - 1;
        while (j >= 0 && (char.IsLetterOrDigit(sql[j]) || sql[j] is '_' or '.'))
        {
            j--;
        }

        if (j >= 0 && sql[j] is '@' or ':')
        {
            throw new ArgumentException(
                $"The SQL has an E'' string right after '{sql[j]}', which Npgsql reads as a parameter name and PostgreSQL as an operator; they would end the string at different quotes. "
                + "Put a space before E'...'.", paramName);
        }
    }

    /// <summary>
    /// PostgreSQL continues a string over whitespace holding a newline ('a'\n'b' is 'ab'), and the continuation of an
    /// E'' string keeps its backslash escapes (Npgsql too). Refused rather than followed: the comments allowed in
    /// between differ between PostgreSQL and Npgsql.
    /// </summary>
    private static void RefuseEscapeStringContinuation(string sql, int i, string paramName)
    {
        var newline = false;
        while (i < sql.Length)
        {
            var c = sql[i];
            if (c is '\n' or '\r')
            {
                newline = true;
                i++;
            }
            else if (IsSpace(c))
            {
                i++;
            }
            else if (c == '-' && At(sql, i + 1) == '-')
            {
                while (i < sql.Length && sql[i] is not ('\n' or '\r'))
                {
                    i++;
                }
            }
            else
            {
                break;
            }
        }

        if (newline && At(sql, i) == '\'')
        {
            throw new ArgumentException(
                "The SQL continues an E'' string on the next line ('...'<newline>'...'), which PostgreSQL joins with backslash escapes. "
                + "Write it as one E'...' literal, or pass the value as a parameter.", paramName);
        }
    }

    /// <summary>PostgreSQL's whitespace: space, tab, newline, carriage return, form feed (and vertical tab since 16).</summary>
    private static bool IsSpace(char c) => c is ' ' or '\t' or '\n' or '\r' or '\f' or '\v';

    private static bool IsDigit(char c) => c is >= '0' and <= '9';

    /// <summary>PostgreSQL's ident_start: [A-Za-z\200-\377_]; every UTF-8 byte of a non-ASCII character is >= 0x80.</summary>
    private static bool IsIdentStart(char c) => c is (>= 'a' and <= 'z') or (>= 'A' and <= 'Z') or '_' || c >= '\u0080';

    /// <summary>PostgreSQL's ident_cont: ident_start, digits and '$'.</summary>
    private static bool IsIdentCont(char c) => IsIdentStart(c) || IsDigit(c) || c == '$';

    private static char At(string s, int i) => i < s.Length ? s[i] : '\0';

    private static int SkipBlockComment(string sql, int i, string paramName)
    {
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

    /// <summary>Skips a quoted string or identifier starting at the quote at <paramref name="i"/>; a doubled quote stays inside.</summary>
    private static int SkipQuoted(string sql, int i, char quote, bool backslashEscapes, string paramName)
    {
        i++;
        var doubled = false;
        while (i < sql.Length)
        {
            var c = sql[i];
            if (backslashEscapes && c == '\\')
            {
                if (doubled)
                {
                    // PostgreSQL reads '' as a quote and goes on with escapes; Npgsql's splitter ends the E'' string at the
                    // '' and reads the rest as a plain string, so a \' there ends it early and a ';' after it splits.
                    throw new ArgumentException(
                        "The SQL has an E'' string with a doubled quote ('') before a backslash, which Npgsql reads differently from PostgreSQL (it could split the statement). "
                        + "Write the quote as \\' in an E'' string, or pass the value as a parameter.", paramName);
                }

                i += 2;
                continue;
            }

            if (c == quote)
            {
                if (At(sql, i + 1) == quote)
                {
                    doubled = true;
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

    /// <summary>PostgreSQL's dolqdelim: $ (dolq_start dolq_cont*)? $, where dolq_start is [A-Za-z\200-\377_] and dolq_cont adds digits.</summary>
    private static bool TryDollarTag(string sql, int i, out int length)
    {
        length = 0;
        var j = i + 1;
        if (j < sql.Length && sql[j] != '$')
        {
            if (!IsIdentStart(sql[j]))
            {
                return false;
            }

            while (j < sql.Length && (IsIdentStart(sql[j]) || IsDigit(sql[j])))
            {
                j++;
            }
        }

        if (j < sql.Length && sql[j] == '$')
        {
            length = j + 1 - i;
            return true;
        }

        return false;
    }
}
