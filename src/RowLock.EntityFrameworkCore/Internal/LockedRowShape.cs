using System.Collections.Concurrent;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata;
using Microsoft.EntityFrameworkCore.Query.SqlExpressions;

namespace RowLock.EntityFrameworkCore.Internal;

/// <summary>
/// Where a locking command's rows sit in its result: for each table it returns, the entity types mapped to that table, the
/// ordinals of their key columns and of every mapped property. The command interceptor uses it to find the rows the query
/// returns among the entities the context already tracks (EF returns those as they are, with the values read before the lock).
/// </summary>
internal sealed class LockedRowShape
{
    private LockedRowShape(IReadOnlyList<TableShape> tables) => Tables = tables;

    public IReadOnlyList<TableShape> Tables { get; }

    /// <summary>One table the query returns columns of.</summary>
    /// <param name="Keys">Each distinct primary key mapped to the table, with its columns' ordinals.</param>
    /// <param name="Properties">Per entity type mapped to the table, its properties with their column ordinals.</param>
    internal sealed record TableShape(
        IReadOnlyList<(IKey Key, int[] Ordinals)> Keys,
        IReadOnlyDictionary<IEntityType, (IProperty Property, int Ordinal)[]> Properties);

    /// <summary>The shape of <paramref name="select"/>'s result, or null when no entity key is returned.</summary>
    public static LockedRowShape? For(SelectExpression select)
    {
        var sources = LockingClause.ProjectionSources(select);
        var tables = new List<TableShape>();
        foreach (var group in sources.Select((s, i) => (Source: s, Ordinal: i)).Where(x => x.Source is not null).GroupBy(x => x.Source!.Value.Table))
        {
            if (group.Key.Table is not ITable table)
            {
                continue;
            }

            var ordinals = new Dictionary<string, int>(StringComparer.Ordinal);
            foreach (var (source, ordinal) in group)
            {
                ordinals.TryAdd(source!.Value.Column, ordinal);
            }

            var store = StoreObjectIdentifier.Table(table.Name, table.Schema);
            var keys = new List<(IKey, int[])>();
            var properties = new Dictionary<IEntityType, (IProperty, int)[]>();
            foreach (var type in table.EntityTypeMappings.Select(m => m.TypeBase).OfType<IEntityType>().Distinct())
            {
                properties[type] = [.. type.GetProperties()
                    .Select(p => (Property: p, Column: p.FindColumn(store)?.Name))
                    .Where(p => p.Column is not null && ordinals.ContainsKey(p.Column))
                    .Select(p => (p.Property, ordinals[p.Column!]))];
                if (type.FindPrimaryKey() is { } key && !keys.Any(k => k.Item1 == key))
                {
                    var keyOrdinals = key.Properties.Select(p => p.FindColumn(store)?.Name is { } c && ordinals.TryGetValue(c, out var o) ? o : -1).ToArray();
                    if (keyOrdinals.All(o => o >= 0))
                    {
                        keys.Add((key, keyOrdinals));
                    }
                }
            }

            if (keys.Count > 0)
            {
                tables.Add(new TableShape(keys, properties));
            }
        }

        return tables.Count > 0 ? new LockedRowShape(tables) : null;
    }
}

/// <summary>
/// The shapes of the locking commands this context type's queries generated, by command text. Lives in the context's
/// internal service provider (one per model and options), so nothing is process-wide; it holds one entry per distinct
/// locking SQL text, as EF's own query cache does.
/// </summary>
internal sealed class LockedRowShapes
{
    private readonly ConcurrentDictionary<string, LockedRowShape> _shapes = new(StringComparer.Ordinal);

    public void Add(string commandText, LockedRowShape shape) => _shapes[commandText] = shape;

    public LockedRowShape? Find(string commandText) => _shapes.TryGetValue(commandText, out var shape) ? shape : null;
}
