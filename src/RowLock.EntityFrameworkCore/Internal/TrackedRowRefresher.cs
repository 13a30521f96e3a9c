using System.Data.Common;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.ChangeTracking.Internal;
using Microsoft.EntityFrameworkCore.Metadata;

namespace RowLock.EntityFrameworkCore.Internal;

/// <summary>
/// EF Core returns an entity the context already tracks as it is, discarding the values the query read (there is no merge
/// option, efcore#16491). For a locking query those discarded values are the only current ones: the tracked values were
/// read before the lock. So for each row a locking query returns, before EF shapes it, this copies the row's values into
/// the tracked entry of that row (which stays Unchanged), and refuses when that entry has local changes, which it must
/// never overwrite silently.
/// </summary>
internal sealed class TrackedRowRefresher(DbContext context, IStateManager stateManager, LockedRowShape shape)
{
    /// <summary>Refreshes the tracked entries of the reader's current row; returns the refusal to throw, or null.</summary>
    public InvalidOperationException? Refresh(DbDataReader row)
    {
        foreach (var table in shape.Tables)
        {
            foreach (var (key, ordinals) in table.Keys)
            {
                if (ReadKey(row, key, ordinals) is not { } values || stateManager.TryGetEntry(key, values) is not { } internalEntry)
                {
                    continue;
                }

                var entry = context.Entry(internalEntry.Entity); // detects changes on this entry
                if (entry.State != EntityState.Unchanged)
                {
                    return new InvalidOperationException(
                        $"WithRowLock read a row of {entry.Metadata.DisplayName()} {{{Describe(key, values)}}} that this context already tracks with local changes ({entry.State}). " +
                        "EF would return the tracked entity with values read before the lock, and RowLock will not overwrite your changes with the locked row's values. " +
                        "Lock the row before changing it (read it first with WithRowLock), or SaveChanges before the locking query.");
                }

                if (entry.Metadata.GetComplexProperties().Any() || entry.Metadata.GetNavigations().Any(n => n.TargetEntityType.IsMappedToJson()))
                {
                    return new InvalidOperationException(
                        $"WithRowLock read a row of {entry.Metadata.DisplayName()} {{{Describe(key, values)}}} that this context already tracks, and cannot refresh its complex or JSON-mapped values. " +
                        "Lock the row before reading it (read it first with WithRowLock), or use a new context (DbContextTransactionRunner gives each attempt one).");
                }

                if (!table.Properties.TryGetValue(entry.Metadata, out var properties))
                {
                    continue;
                }

                foreach (var (property, ordinal) in properties)
                {
                    if (property.IsPrimaryKey())
                    {
                        continue;
                    }

                    if (!TryRead(row, ordinal, property, out var value))
                    {
                        return new InvalidOperationException(
                            $"WithRowLock read a row of {entry.Metadata.DisplayName()} that this context already tracks, and cannot convert column {ordinal} to {property.Name}'s type {property.ClrType.Name} to refresh it. " +
                            "Lock the row before reading it, or use a new context.");
                    }

                    var member = entry.Property(property);
                    member.CurrentValue = value;
                    member.OriginalValue = value;
                    member.IsModified = false;
                }
            }
        }

        return null;
    }

    /// <summary>The key values of the row, or null when one is null or cannot be read as the key's type.</summary>
    private static object?[]? ReadKey(DbDataReader row, IKey key, int[] ordinals)
    {
        var values = new object?[ordinals.Length];
        for (var i = 0; i < ordinals.Length; i++)
        {
            if (!TryRead(row, ordinals[i], key.Properties[i], out values[i]) || values[i] is null)
            {
                return null;
            }
        }

        return values;
    }

    private static bool TryRead(DbDataReader row, int ordinal, IProperty property, out object? value)
    {
        var raw = row.IsDBNull(ordinal) ? null : row.GetValue(ordinal);
        value = raw is null ? null : property.GetTypeMapping().Converter is { } converter ? converter.ConvertFromProvider(raw) : raw;
        var type = Nullable.GetUnderlyingType(property.ClrType) ?? property.ClrType;
        if (value is not null && !type.IsInstanceOfType(value))
        {
            try
            {
                value = Convert.ChangeType(value, type, System.Globalization.CultureInfo.InvariantCulture);
            }
            catch (Exception e) when (e is InvalidCastException or FormatException or OverflowException)
            {
                return false;
            }
        }

        return true;
    }

    private static string Describe(IKey key, object?[] values) =>
        string.Join(", ", key.Properties.Select((p, i) => $"{p.Name}: {values[i]}"));
}
