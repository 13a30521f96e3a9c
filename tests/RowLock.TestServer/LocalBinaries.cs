namespace RowLock.TestServer;

/// <summary>Finds a folder with <c>initdb</c>, <c>pg_ctl</c> and <c>postgres</c>.</summary>
internal static class LocalBinaries
{
    public static string? Find()
    {
        var candidates = new List<string>();
        var explicitFolder = Environment.GetEnvironmentVariable("ROWLOCK_PG_BIN");
        if (!string.IsNullOrEmpty(explicitFolder))
        {
            candidates.Add(explicitFolder);
        }

        // Debian and Ubuntu: /usr/lib/postgresql/<version>/bin, newest first.
        const string debian = "/usr/lib/postgresql";
        if (Directory.Exists(debian))
        {
            candidates.AddRange(Directory.GetDirectories(debian)
                .Select(d => (Folder: d, Version: int.TryParse(Path.GetFileName(d), out var v) ? v : -1))
                .OrderByDescending(x => x.Version)
                .Select(x => Path.Combine(x.Folder, "bin")));
        }

        candidates.AddRange((Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries));
        candidates.Add("/usr/local/pgsql/bin");

        return candidates.FirstOrDefault(folder =>
            File.Exists(Path.Combine(folder, "pg_ctl")) && File.Exists(Path.Combine(folder, "initdb")) && File.Exists(Path.Combine(folder, "postgres")));
    }
}
