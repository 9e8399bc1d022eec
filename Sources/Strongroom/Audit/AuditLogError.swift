import StrongroomCrypto
import StrongroomStorage

/// Why the audit log could not be written or read. Operations that needed it fail closed.
public enum AuditLogError: Error, Equatable, Sendable {
    /// The log's folder or a segment file could not be written or read.
    case unavailable(FileError)
    /// The audit table could not be written or read (PostgreSQL stores): the database's error.
    case database(DatabaseError)
    /// The MAC of an entry could not be computed.
    case crypto(CryptoError)
    /// The last entry of the newest segment (or table) is not a well-formed, MAC'd line, so the chain
    /// cannot be continued from it; run `strongroom audit verify`.
    case unreadableTail(segment: String)
    /// Other processes kept appending first, this many times in a row (PostgreSQL stores): the
    /// operation was refused rather than left unaudited.
    case contended(attempts: Int)
    /// The log's end does not match its signed head (entries lost, head removed or replaced): nothing
    /// is appended, so nothing is read, until `strongroom audit acknowledge-gap` records the gap.
    case gap(AuditGap)
    /// `acknowledge-gap` found no gap: the log's end matches its signed head.
    case noGap
    /// The acknowledgement of a gap was appended, but the signed head could not be moved to it (the
    /// key database was busy): writers still refuse; acknowledge again.
    case headNotSaved
}
