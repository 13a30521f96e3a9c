using Microsoft.EntityFrameworkCore.Query;
using Microsoft.EntityFrameworkCore.Storage;
using Npgsql.EntityFrameworkCore.PostgreSQL.Infrastructure.Internal;

namespace RowLock.EntityFrameworkCore.Internal;

/// <summary>Replaces efcore.pg's <c>NpgsqlQuerySqlGeneratorFactory</c>, with the same settings.</summary>
internal sealed class RowLockQuerySqlGeneratorFactory(
    QuerySqlGeneratorDependencies dependencies,
    IRelationalTypeMappingSource typeMappingSource,
    INpgsqlSingletonOptions npgsqlSingletonOptions,
    LockedRowShapes shapes) : IQuerySqlGeneratorFactory
{
    public QuerySqlGenerator Create() => new RowLockQuerySqlGenerator(
        dependencies, typeMappingSource, npgsqlSingletonOptions.ReverseNullOrderingEnabled, npgsqlSingletonOptions.PostgresVersion, shapes);
}
