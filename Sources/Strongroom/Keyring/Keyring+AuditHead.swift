import StrongroomStorage
/// What the keyring keeps for the audit log in the key database: the store's audit durability, and the
/// signed audit chain head (`AuditHeadStore`).
extension Keyring: AuditHeadStore {
    /// The audit durability recorded for the store.
    func auditDurability() -> AuditDurability {
        let text: String? = (try? database.read { (tables) throws(DatabaseError) in try tables.auditDurability() }) ?? nil
        return text.flatMap { AuditDurability(rawValue: $0) } ?? .written
    }

    /// The signed audit chain head, if one was saved.
    func auditHead() throws(StoreError) -> (head: AuditHead, code: [UInt8])? {
        try database.read { (tables) throws(DatabaseError) in try tables.auditHead() }
    }

    /// Saves the audit chain head as `mode` says (`AuditHeadSaveMode`): a writer's head only moves
    /// forward (another process may share the log and have saved a newer one) and is created only for
    /// the log's first entries, never again once deleted; an acknowledged gap replaces it.
    func saveAuditHead(_ head: AuditHead, mode: AuditHeadSaveMode) -> AuditHeadSave {
        guard let code = try? head.authenticationCode(auditMAC) else { return .failed }
        let saved: AuditHeadSave? = try? database.read { (tables) throws(DatabaseError) in
            if mode != .advance {
                try tables.upsertAuditHead(head, code: code, onlyForward: mode != .replace)
                return .saved
            }
            guard try !tables.advanceAuditHead(head, code: code) else { return .saved }
            return try tables.hasAuditHead() ? .saved : .missing
        }
        return saved ?? .failed
    }
}
