import Foundation
import StrongroomCrypto
import StrongroomStorage

/// The master key's rotation: the KEKs re-wrapped under a new master key in one transaction of the key
/// database, so the cost is the same at a thousand subjects or a billion. No walk: nothing to resume.
struct MasterKeyRotation {
    let store: Store
    let context: AccessContext
    private var keyring: Keyring { store.keyring }

    /// Re-wraps every KEK under `newMaster` and makes it the store's master key.
    func run(to newMaster: SecretKey) throws(StoreError) -> RotationReport {
        guard newMaster.byteCount == KeyFile.keyByteCount else { throw .masterKeyWrongLength(bytes: newMaster.byteCount, expected: KeyFile.keyByteCount) }
        let (report, rotated): (RotationReport, Keyring.LoadedKeys) = try keyring.database.transaction { (tables) throws(StoreError) in
            let keys = keyring.keys
            let generation: UInt32, rows: [WrappedKEK]
            do throws(DatabaseError) {
                (generation, rows) = (try tables.masterGeneration() ?? 1, try tables.wrappedKEKs())
            } catch { throw .database(error) }
            let newHandle = try Keyring.masterKeyHandle(newMaster, generation: generation + 1, storeID: keyring.storeID,
                                                        usage: KeyUsage(name: "master:\(generation + 1)", budget: keyring.nonceBudget, reserved: 0))
            // Reserved in this transaction: if it rolls back, the new master key is never used.
            try tables.reserve(newHandle.usage!, count: rows.count)
            for row in rows {
                let location = EnvelopeLocation(slot: .keyEncryptionKey, recordID: Int64(row.version))
                let kek: SecretKey
                do throws(EnvelopeError) {
                    kek = try Envelope.openKey(row.wrapped, at: location, under: keys.master, storeID: keyring.storeID)
                } catch { throw .unreadableKey("the key-encryption key", error) }
                let rewrapped = try Envelope.seal(key: kek, at: location, under: newHandle, storeID: keyring.storeID)
                do throws(DatabaseError) { try tables.updateKEK(version: row.version, wrapped: rewrapped) } catch { throw .database(error) }
            }
            do throws(DatabaseError) { try tables.setMasterGeneration(generation + 1) } catch { throw .database(error) }
            try store.injectFault("rotate-master.in-transaction", 1)
            return (RotationReport(kind: .master, fromVersion: Int(generation), toVersion: Int(generation + 1),
                                   items: rows.count, resumed: false),
                    Keyring.LoadedKeys(master: newHandle, keyEncryptionKeys: keys.keyEncryptionKeys,
                                       currentVersion: keys.currentVersion, phoneIndexes: keys.phoneIndexes,
                                       emailIndexes: keys.emailIndexes))
        }
        // Only now, with the new wrapping committed: had the commit failed, this process would hold a
        // master key the store does not know, and its next KEK rotation would wrap under it.
        keyring.replaceKeys(rotated)
        _ = try keyring.database.read { (tables) throws(DatabaseError) in try tables.discardDeletedContent() }
        try store.audit([AuditEvent(.keys, context, subject: nil,
                                    detail: "rotate-master: generation \(report.fromVersion) -> \(report.toVersion), \(report.items) KEK re-wrapped")])
        return report
    }
}

extension Store {
    /// Rotates the master key: the KEK is re-wrapped under `newMaster` in one transaction of the key
    /// database, so the cost is the same at a thousand subjects or a billion. Afterwards the old master
    /// key is refused (`wrongMasterKey`). Write the new key where the store's users will find it
    /// *before* calling this (`KeyFile.create`), so that no crash leaves the store locked with a key
    /// that exists nowhere.
    public func rotateMasterKey(to newMaster: SecretKey, context: AccessContext) throws(StoreError) -> RotationReport {
        try MasterKeyRotation(store: self, context: context).run(to: newMaster)
    }
}
