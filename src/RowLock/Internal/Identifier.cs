using System.Text;
using Npgsql;

namespace RowLock.Internal;

/// <summary>Validates and quotes SQL identifiers; user text never reaches SQL unquoted.</summary>
internal static class Identifier
{
    /// <summary>PostgreSQL's NAMEDATALEN - 1: longer names are silently truncated by the server, which would name another object.</summary>
    public const int MaxBytes = 63;

    private static readonly NpgsqlCommandBuilder Quoter = new();

    public static string Quote(string identifier, string paramName)
    {
        Validate(identifier, paramName);
        return Quoter.QuoteIdentifier(identifier);
    }

    public static void Validate(string identifier, string paramName)
    {
        ArgumentNullException.ThrowIfNull(identifier, paramName);
        if (string.IsNullOrWhiteSpace(identifier))
        {
            throw new ArgumentException("An identifier (table or column name) cannot be empty or white space.", paramName);
        }

        if (identifier.Contains('\0', StringComparison.Ordinal))
        {
            throw new ArgumentException("An identifier cannot contain a NUL character.", paramName);
        }

        if (Encoding.UTF8.GetByteCount(identifier) > MaxBytes)
        {
            throw new ArgumentException(
                $"The identifier '{identifier}' is longer than PostgreSQL's limit of {MaxBytes} bytes; the server would truncate it and name another object.", paramName);
        }
    }
}
