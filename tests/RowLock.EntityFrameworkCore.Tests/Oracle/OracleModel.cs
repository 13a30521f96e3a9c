using Microsoft.EntityFrameworkCore;

namespace RowLock.EntityFrameworkCore.Tests.Oracle;

// One small entity per EF mapping feature the oracle's corpus locks through. Every shape's row has id 1; the counters start at 0.
public sealed class Account
{
    public int Id { get; set; }

    public int Balance { get; set; }

    public int? ManagerId { get; set; }

    public Manager? Manager { get; set; }

    public List<Entry> Entries { get; set; } = [];
}

public sealed class Entry
{
    public int Id { get; set; }

    public int AccountId { get; set; }

    public Account Account { get; set; } = null!;

    public int Amount { get; set; }
}

public sealed class Manager
{
    public int Id { get; set; }

    public int Points { get; set; }
}

public sealed record AccountDto(int Id, int Balance);

// Owned: in the owner's table, in a table of its own (one and many), and as JSON.
public sealed class Box
{
    public int Id { get; set; }

    public Size Size { get; set; } = new();
}

public sealed class Size
{
    public int Count { get; set; }
}

public sealed class Crate
{
    public int Id { get; set; }

    public List<Slot> Slots { get; set; } = [];
}

public sealed class Slot
{
    public int Count { get; set; }
}

public sealed class Pallet
{
    public int Id { get; set; }

    public Label Label { get; set; } = new();
}

public sealed class Label
{
    public int Count { get; set; }
}

public sealed class Folder
{
    public int Id { get; set; }

    public Meta Meta { get; set; } = new();

    public List<Meta> History { get; set; } = [];
}

public sealed class Meta
{
    public int Count { get; set; }
}

// Inheritance: TPH, TPT, TPC.
public class Vehicle
{
    public int Id { get; set; }

    public int Miles { get; set; }
}

public sealed class Truck : Vehicle
{
    public int Load { get; set; }
}

public class Animal
{
    public int Id { get; set; }

    public int Age { get; set; }
}

public sealed class Dog : Animal
{
    public int Barks { get; set; }
}

public abstract class Figure
{
    public int Id { get; set; }

    public int Edges { get; set; }
}

public sealed class Circle : Figure
{
    public int Radius { get; set; }
}

public sealed class Square : Figure
{
    public int Side { get; set; }
}

// Table splitting: two entity types in one table.
public sealed class Car
{
    public int Id { get; set; }

    public int Seats { get; set; }

    public Engine Engine { get; set; } = null!;
}

public sealed class Engine
{
    public int Id { get; set; }

    public int Power { get; set; }
}

public sealed class Bike
{
    public int Id { get; set; }

    public Bell? Bell { get; set; }
}

public sealed class Bell
{
    public int Id { get; set; }

    public int Rings { get; set; }
}

// A global query filter, a table-valued function and a view.
public sealed class Ticket
{
    public int Id { get; set; }

    public int Hits { get; set; }

    public bool Deleted { get; set; }
}

public sealed class TicketView
{
    public int Id { get; set; }

    public int Hits { get; set; }
}

public sealed class OracleContext(DbContextOptions<OracleContext> options) : DbContext(options)
{
    public DbSet<Account> Accounts => Set<Account>();

    public DbSet<Entry> Entries => Set<Entry>();

    public DbSet<Box> Boxes => Set<Box>();

    public DbSet<Crate> Crates => Set<Crate>();

    public DbSet<Pallet> Pallets => Set<Pallet>();

    public DbSet<Folder> Folders => Set<Folder>();

    public DbSet<Vehicle> Vehicles => Set<Vehicle>();

    public DbSet<Animal> Animals => Set<Animal>();

    public DbSet<Figure> Figures => Set<Figure>();

    public DbSet<Car> Cars => Set<Car>();

    public DbSet<Bike> Bikes => Set<Bike>();

    public DbSet<Ticket> Tickets => Set<Ticket>();

    public DbSet<TicketView> TicketViews => Set<TicketView>();

    /// <summary>A queryable (table-valued) function: <c>SELECT * FROM tickets_fn()</c>.</summary>
    public IQueryable<Ticket> TicketsFn() => FromExpression(() => TicketsFn());

    /// <summary>The SQL EnsureCreated does not write: the function and the views.</summary>
    public const string ExtraSql = """
        CREATE FUNCTION tickets_fn() RETURNS SETOF tickets LANGUAGE sql STABLE AS 'SELECT * FROM tickets';
        CREATE VIEW ticket_view AS SELECT "Id", "Hits" FROM tickets;
        CREATE VIEW ticket_fn_view AS SELECT * FROM tickets_fn();
        """;

    protected override void OnModelCreating(ModelBuilder modelBuilder)
    {
        foreach (var type in new[] { typeof(Account), typeof(Entry), typeof(Manager), typeof(Box), typeof(Crate), typeof(Pallet), typeof(Folder), typeof(Vehicle), typeof(Animal), typeof(Car), typeof(Bike), typeof(Ticket) })
        {
            modelBuilder.Entity(type).Property("Id").ValueGeneratedNever();
        }

        modelBuilder.Entity<Account>().ToTable("accounts");
        modelBuilder.Entity<Entry>().ToTable("entries");
        modelBuilder.Entity<Manager>().ToTable("managers");
        modelBuilder.Entity<Box>().ToTable("boxes").OwnsOne(b => b.Size);
        modelBuilder.Entity<Crate>().ToTable("crates").OwnsMany(c => c.Slots, s => s.ToTable("crate_slots"));
        modelBuilder.Entity<Pallet>().ToTable("pallets").OwnsOne(p => p.Label, l => l.ToTable("pallet_labels"));
        modelBuilder.Entity<Folder>().ToTable("folders").OwnsOne(f => f.Meta, m => m.ToJson());
        modelBuilder.Entity<Folder>().OwnsMany(f => f.History, m => m.ToJson());
        modelBuilder.Entity<Vehicle>().ToTable("vehicles").HasDiscriminator<string>("Kind").HasValue<Vehicle>("vehicle").HasValue<Truck>("truck");
        modelBuilder.Entity<Animal>().UseTptMappingStrategy().ToTable("animals");
        modelBuilder.Entity<Dog>().ToTable("dogs");
        modelBuilder.Entity<Figure>().UseTpcMappingStrategy().Property(f => f.Id).ValueGeneratedNever();
        modelBuilder.Entity<Circle>().ToTable("circles");
        modelBuilder.Entity<Square>().ToTable("squares");
        modelBuilder.Entity<Car>().ToTable("cars").HasOne(c => c.Engine).WithOne().HasForeignKey<Engine>(e => e.Id);
        modelBuilder.Entity<Engine>().ToTable("cars");
        modelBuilder.Entity<Car>().Navigation(c => c.Engine).IsRequired();
        modelBuilder.Entity<Bike>().ToTable("bikes").HasOne(b => b.Bell).WithOne().HasForeignKey<Bell>(e => e.Id);
        modelBuilder.Entity<Bell>().ToTable("bikes");
        modelBuilder.Entity<Ticket>().ToTable("tickets").HasQueryFilter(t => !t.Deleted);
        modelBuilder.Entity<TicketView>().ToView("ticket_view").HasKey(t => t.Id);
        modelBuilder.HasDbFunction(typeof(OracleContext).GetMethod(nameof(TicketsFn))!).HasName("tickets_fn");
    }
}
