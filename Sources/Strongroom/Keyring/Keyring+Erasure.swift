import Foundation
import StrongroomCrypto
import StrongroomStorage
import Synchronization

/// Erasure: destroying a subject's keys (crypto-shredding) with its tombstone and receipt, finishing the
/// key database's erasure of old pages, and noticing the erasures and rotations of other processes so
/// that no cached key of an erased subject is used.
extension Keyring {
    /// The latest erasure whose subject's keys this process dropped from its cache, and when that was
    /// last checked: at which data version (`SQLiteConnection.dataVersion` of the data connection), and
    /// at what time (PostgreSQL, between announcements).
    struct ErasureWatch: Sendable {
        var latestNumber: Int64
        var checkedAtDataVersion: UInt32?
        var checkedAt: ContinuousClock.Instant?
    }

    /// How long a PostgreSQL process relies on erasure announcements alone before it reads the key
    /// change counter anyway (an announcement is delivered asynchronously, after its commit).
    static let announcementTrust: Duration = .seconds(1)

    /// Reloads the keys, and drops the cached keys of subjects erased by another process, if another
    /// connection committed to the key database since they were loaded; returns whether it did.
    func reloadIfChanged() throws(StoreError) -> Bool {
        try reloadIfChanged(trustingAnnouncementsFor: nil)
    }

    /// `reloadIfChanged`, but with `trust`, on PostgreSQL, nothing is read while no erasure was
    /// announced and the last check is younger than `trust` (`noticeErasures`).
    private func reloadIfChanged(trustingAnnouncementsFor trust: Duration?) throws(StoreError) -> Bool {
        // One check at a time: a caller that finds nothing changed must not go on to use a cached key
        // while another, which saw a change, is still dropping the erased subjects' keys. The counter
        // is recorded only once the reload succeeded, so a failed one is tried again.
        try loadedDataVersion.withLock { (seen) throws(StoreError) in
            let now = ContinuousClock.now
            if let trust, database.takeErasureAnnouncements() == false,
               erasures.withLock({ $0.checkedAt.map { now - $0 < trust } ?? false }) {
                return false
            }
            do throws(StoreError) {
                let version = try database.read { (tables) throws(DatabaseError) in try tables.changeCounter() }
                let changed = seen != 0 && seen != version
                if changed {
                    try reload()
                    try forgetErasedSubjects()
                }
                seen = version
                erasures.withLock { $0.checkedAt = now }
                return changed
            } catch {
                // An announcement taken above is spent: the next call must read the counter.
                erasures.withLock { $0.checkedAt = nil }
                throw error
            }
        }
    }

    /// Makes sure no cached key of a subject erased by any process is used to open rows read from the
    /// data at `dataVersion` (the data connection's `dataVersion`, nil when the backend has none).
    ///
    /// A cached key is the one thing an erasure in another process cannot reach, and an erased
    /// subject's rows come back only with a write to the data (a restored backup): its own erasure
    /// deleted them. So while the data is as it was at the last check, the cache is as current as that
    /// check made it, and the common path costs a comparison. PostgreSQL has no data version: there an
    /// erasure is announced when it commits (`Schema.erasureChannel`), and while none has arrived the
    /// common path reads what the server already sent, without a round trip; as the announcement comes
    /// asynchronously, the check is made anyway once `announcementTrust` has passed since the last.
    /// The check reads the key database's change counter, and if it moved, the erasures numbered since
    /// the last check have their subjects' keys dropped (`reloadIfChanged`).
    func noticeErasures(dataVersion: UInt32?) throws(StoreError) {
        if let dataVersion, erasures.withLock({ $0.checkedAtDataVersion == dataVersion }) { return }
        _ = try reloadIfChanged(trustingAnnouncementsFor: dataVersion == nil ? Keyring.announcementTrust : nil)
        // Set only after the check, which began after `dataVersion` was read: rows read at that
        // version whose subject's key was destroyed before were seen to be erased.
        erasures.withLock { $0.checkedAtDataVersion = dataVersion }
    }

    /// Drops from the cache every key of the subjects erased (by any process) since the last check.
    private func forgetErasedSubjects() throws(StoreError) {
        let known = erasures.withLock { $0.latestNumber }
        let erased = try database.read { (tables) throws(DatabaseError) in try tables.erasures(after: known) }
        guard let latest = erased.map(\.1).max() else { return }
        subjectKeys.withLock { $0.removeAll(owners: Set(erased.map(\.0.rawValue))) }
        erasures.withLock { $0.latestNumber = max($0.latestNumber, latest) }
    }

    /// Destroys every version of `subject`'s key (crypto-shredding) and, with `tombstone`, records the
    /// erasure under the next erasure number (other processes drop the subject's cached keys when they
    /// see it); with `receipt`, also writes the tombstone with the receipt it issues (with the number of
    /// key versions destroyed and the time), in the same key-database transaction, so that no key is
    /// destroyed without its receipt, and returns it (or the one an earlier run wrote). Then has the
    /// key database drop the deleted row from its files (`finishErasures`, waiting up to `erasureWait`
    /// for readers of older snapshots); `complete` is false when a reader held old pages back, which
    /// the store row then records for the next open or `keys compact` to finish.
    @discardableResult
    func destroySubjectKeys(of subject: SubjectID, tombstone: Bool,
                            receipt: ErasureReceipt.Draft? = nil)
        throws(StoreError) -> (complete: Bool, receipt: ErasureReceipt?) {
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let (versions, made) = try database.transaction { (tables) throws(StoreError) in
            let versions: [UInt32]
            var made: ErasureReceipt?
            do throws(DatabaseError) {
                versions = try tables.subjectKeyVersions(subject)
                try tables.deleteSubjectKeys(subject)
                if tombstone { try tables.recordErasure(of: subject, at: now) }
                // An erasure run again (it crashed after this commit, or the rows came back from a data
                // backup) keeps the receipt made the first time.
                if receipt != nil { made = try tables.tombstone(of: subject) }
            } catch {
                throw .database(error)
            }
            if let receipt, made == nil {
                let issued: ErasureReceipt
                do throws(CryptoError) { issued = try receipt.issue(subjectKeys: versions.count, at: now) } catch { throw .crypto(error) }
                do throws(DatabaseError) { try tables.insertTombstone(issued) } catch { throw .database(error) }
                made = issued
            }
            // Recorded with the deletion, so that a crash before the old pages are overwritten leaves
            // the job to the next open.
            do throws(DatabaseError) { try tables.markErasedPages(at: now) } catch { throw .database(error) }
            return (versions, made)
        }
        forget(subject, versions: versions)
        return (try finishErasures(waitingUpTo: erasureWait), made)
    }

    /// Overwrites the old pages of destroyed keys if an erasure left them (`erasedPagesSince`), waiting
    /// up to `milliseconds` for readers of older snapshots; returns true when none remain. SQLite: the
    /// WAL is checkpointed into the main file, whose deleted rows `secure_delete` overwrote, and cut
    /// to zero bytes; PostgreSQL keeps what it keeps (SECURITY.md) and this is always true.
    func finishErasures(waitingUpTo milliseconds: Int32) throws(StoreError) -> Bool {
        try database.read { (tables) throws(DatabaseError) in
            guard try tables.erasedPagesSince() != nil else { return true }
            let latest = try tables.latestErasureNumber()
            guard try tables.discardDeletedContent(waitingUpTo: milliseconds) else { return false }
            // Cleared only if no other process erased since `latest` was read: that erasure's pages may
            // have missed this checkpoint, and its own clears the record once they are gone. (This small
            // write leaves the store row's page in the WAL again: it holds no key.)
            try tables.clearErasedPages(ifLatestErasureIs: latest)
            return true
        }
    }

    /// Since when old pages of a destroyed key have waited for a reader of an older snapshot of the
    /// key database to end (nil when none wait).
    func erasedPagesSince() throws(StoreError) -> Date? {
        try database.read { (tables) throws(DatabaseError) in try tables.erasedPagesSince() }
            .map { Date(timeIntervalSince1970: Double($0) / 1000) }
    }

    /// Whether `subject` was erased (its key destroyed).
    func isErased(_ subject: SubjectID) throws(StoreError) -> Bool {
        try database.read { (tables) throws(DatabaseError) in try tables.isErased(subject) }
    }
}
