/// When an audit entry counts as kept, before the plaintext it records is returned.
public enum AuditDurability: String, Sendable, Codable {
    /// Stored into the log file's shared mapping (it is in the operating system's page cache at once:
    /// a killed process loses nothing; a power cut may lose the last entries).
    case written
    /// Also flushed to stable storage (`fdatasync`, group-committed) before the plaintext is returned; on
    /// PostgreSQL, the audit connection's commits wait for the WAL flush (`synchronous_commit = on`).
    case synced
}
