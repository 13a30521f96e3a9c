using Microsoft.EntityFrameworkCore;
using Npgsql;
using RowLock.EntityFrameworkCore;

namespace RowLock.Samples.Ef;

/// <summary>A row of <c>hot_record</c>: one total many workers add to.</summary>
public sealed class HotTotal
{
    public int Id { get; set; }

    public int Total { get; set; }
}

/// <summary>A FIFO cost layer of <c>cost_layers</c>.</summary>
public sealed class CostLayer
{
    public long Id { get; set; }

    public string Product { get; set; } = "";

    public DateTime Created { get; set; }

    public int RemainingQty { get; set; }
}

/// <summary>A row of <c>invoices</c>.</summary>
public sealed class Invoice
{
    public long Id { get; set; }

    public string State { get; set; } = "draft";

    public int Posts { get; set; }
}

/// <summary>A row of <c>documents</c>.</summary>
public sealed class Document
{
    public int Id { get; set; }

    public string Body { get; set; } = "";
}

/// <summary>A row of <c>registry_syncs</c>: one run of the one-time sync.</summary>
public sealed class RegistrySync
{
    public int Round { get; set; }

    public int Worker { get; set; }
}

/// <summary>
/// The EF lab's model, mapped onto the tables the plain scenarios create (same names, same columns), so both variants
/// share set-up and verdicts. No migrations: the scenarios create their tables with SQL.
/// </summary>
public sealed class LabContext(DbContextOptions<LabContext> options) : DbContext(options)
{
    public DbSet<HotTotal> HotTotals => Set<HotTotal>();

    public DbSet<CostLayer> CostLayers => Set<CostLayer>();

    public DbSet<Invoice> Invoices => Set<Invoice>();

    public DbSet<Document> Documents => Set<Document>();

    public DbSet<RegistrySync> RegistrySyncs => Set<RegistrySync>();

    /// <summary>A factory over <paramref name="dataSource"/> with RowLock's query extensions on: a new context per call.</summary>
    public static IDbContextFactory<LabContext> Factory(NpgsqlDataSource dataSource) =>
        new LabContextFactory(new DbContextOptionsBuilder<LabContext>().UseNpgsql(dataSource).UseRowLock().Options);

    protected override void OnModelCreating(ModelBuilder modelBuilder)
    {
        modelBuilder.Entity<HotTotal>(e =>
        {
            e.ToTable("hot_record");
            e.Property(h => h.Id).HasColumnName("id").ValueGeneratedNever();
            e.Property(h => h.Total).HasColumnName("total");
        });
        modelBuilder.Entity<CostLayer>(e =>
        {
            e.ToTable("cost_layers");
            e.Property(l => l.Id).HasColumnName("id");
            e.Property(l => l.Product).HasColumnName("product");
            e.Property(l => l.Created).HasColumnName("created");
            e.Property(l => l.RemainingQty).HasColumnName("remaining_qty");
        });
        modelBuilder.Entity<Invoice>(e =>
        {
            e.ToTable("invoices");
            e.Property(i => i.Id).HasColumnName("id").ValueGeneratedNever();
            e.Property(i => i.State).HasColumnName("state");
            e.Property(i => i.Posts).HasColumnName("posts");
        });
        modelBuilder.Entity<Document>(e =>
        {
            e.ToTable("documents");
            e.Property(d => d.Id).HasColumnName("id").ValueGeneratedNever();
            e.Property(d => d.Body).HasColumnName("body");
        });
        modelBuilder.Entity<RegistrySync>(e =>
        {
            e.ToTable("registry_syncs");
            e.HasKey(s => new { s.Round, s.Worker }); // EF needs a key to insert; the table itself has none
            e.Property(s => s.Round).HasColumnName("round");
            e.Property(s => s.Worker).HasColumnName("worker");
        });
    }

    private sealed class LabContextFactory(DbContextOptions<LabContext> options) : IDbContextFactory<LabContext>
    {
        public LabContext CreateDbContext() => new(options);
    }
}
