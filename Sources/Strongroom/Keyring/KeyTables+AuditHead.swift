import StrongroomStorage

/// The key tables' statements on `audit_head`: the signed audit chain head, read, saved and advanced.
extension KeyTables {
    /// The saved audit chain head with its MAC.
    func auditHead() throws(DatabaseError) -> (head: AuditHead, code: [UInt8])? {
        try connection.firstRow("SELECT sequence, entry_mac, time, head_mac FROM audit_head WHERE id = 1") { row in
            (AuditHead(sequence: UInt64(row.int64(0)), entryMAC: row.blob(1) ?? [], microseconds: row.int64(2)), row.blob(3) ?? [])
        }
    }

    /// Creates or replaces the saved head; with `onlyForward`, an existing head is replaced only by a newer one.
    func upsertAuditHead(_ head: AuditHead, code: [UInt8], onlyForward: Bool) throws(DatabaseError) {
        try connection.run("""
            INSERT INTO audit_head (id, sequence, entry_mac, time, head_mac) VALUES (1, ?, ?, ?, ?)
            ON CONFLICT (id) DO UPDATE SET sequence = excluded.sequence, entry_mac = excluded.entry_mac,
                time = excluded.time, head_mac = excluded.head_mac
            \(onlyForward ? "WHERE excluded.sequence > audit_head.sequence" : "")
            """, [.integer(Int64(head.sequence)), .blob(head.entryMAC), .integer(head.microseconds), .blob(code)])
    }

    /// Moves an existing saved head forward to `head`; returns whether a row changed.
    func advanceAuditHead(_ head: AuditHead, code: [UInt8]) throws(DatabaseError) -> Bool {
        try connection.run("UPDATE audit_head SET sequence = ?, entry_mac = ?, time = ?, head_mac = ? WHERE id = 1 AND sequence < ?", [
            .integer(Int64(head.sequence)), .blob(head.entryMAC), .integer(head.microseconds), .blob(code),
            .integer(Int64(head.sequence)),
        ])
        return connection.changes > 0
    }

    /// Whether a head was ever saved (and not deleted).
    func hasAuditHead() throws(DatabaseError) -> Bool {
        try connection.scalarInteger("SELECT 1 FROM audit_head WHERE id = 1") != nil
    }
}
