namespace RowLock.Internal;

/// <summary>
/// Built-in functions that PostgreSQL refuses under a locking clause: aggregates anywhere in the locked SELECT
/// ("FOR UPDATE is not allowed with aggregate functions") and set-returning functions in its select list ("... with
/// set-returning functions in the target list"). User-defined aggregates and functions cannot be seen in the text.
/// </summary>
internal static class SqlFunctionNames
{
    private static readonly string[] Aggregates =
    [
        "count", "sum", "avg", "min", "max", "array_agg", "string_agg", "bool_and", "bool_or", "every",
        "bit_and", "bit_or", "bit_xor", "json_agg", "jsonb_agg", "json_object_agg", "jsonb_object_agg",
        "json_agg_strict", "jsonb_agg_strict", "json_object_agg_strict", "jsonb_object_agg_strict",
        "json_object_agg_unique", "jsonb_object_agg_unique", "json_object_agg_unique_strict", "jsonb_object_agg_unique_strict",
        "json_arrayagg", "json_objectagg", "xmlagg", "any_value", "range_agg", "range_intersect_agg",
        "stddev", "stddev_pop", "stddev_samp", "variance", "var_pop", "var_samp",
        "corr", "covar_pop", "covar_samp", "regr_avgx", "regr_avgy", "regr_count", "regr_intercept",
        "regr_r2", "regr_slope", "regr_sxx", "regr_sxy", "regr_syy",
        "mode", "percentile_cont", "percentile_disc",
    ];

    private static readonly string[] SetReturning =
    [
        "generate_series", "generate_subscripts", "unnest", "regexp_matches", "regexp_split_to_table",
        "string_to_table", "json_array_elements", "json_array_elements_text", "jsonb_array_elements",
        "jsonb_array_elements_text", "json_each", "json_each_text", "jsonb_each", "jsonb_each_text",
        "json_object_keys", "jsonb_object_keys", "json_populate_recordset", "jsonb_populate_recordset",
        "json_to_recordset", "jsonb_to_recordset", "jsonb_path_query", "pg_get_keywords", "pg_options_to_table",
    ];

    public static bool IsAggregate(ReadOnlySpan<char> name) => Contains(Aggregates, name);

    public static bool IsSetReturning(ReadOnlySpan<char> name) => Contains(SetReturning, name);

    private static bool Contains(string[] names, ReadOnlySpan<char> name)
    {
        foreach (var candidate in names)
        {
            if (name.Equals(candidate, StringComparison.OrdinalIgnoreCase))
            {
                return true;
            }
        }

        return false;
    }
}
