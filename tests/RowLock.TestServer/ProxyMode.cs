namespace RowLock.TestServer;

/// <summary>What a <see cref="FaultProxy"/> does with the bytes of every connection.</summary>
public enum ProxyMode
{
    /// <summary>Forwards both ways; a close or reset on one side is passed on to the other.</summary>
    Forward,

    /// <summary>
    /// A silent network partition: nothing is read or written on either side and both sockets stay open (no FIN, no RST),
    /// so neither end can tell. Bytes already read are held and delivered if the mode goes back to
    /// <see cref="Forward"/> (the partition healed). New connections are accepted and then get the same silence.
    /// </summary>
    Silent,

    /// <summary>Every open connection is closed with a TCP reset (RST) on both sides, and so is every new one.</summary>
    Reset,
}
