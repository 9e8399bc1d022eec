import Foundation
import StrongroomStorage

/// The legal ground a purpose of processing rests on (GDPR Art. 6(1)).
public enum LawfulBasis: String, Sendable, Codable, CaseIterable {
    /// The subject consented (Art. 6(1)(a)): reads need a granted consent in the ledger.
    case consent
    /// Needed for a contract with the subject (Art. 6(1)(b)).
    case contract
    /// The controller's legitimate interest (Art. 6(1)(f)).
    case legitimateInterest = "legitimate-interest"
    /// A legal obligation (Art. 6(1)(c)).
    case legalObligation = "legal-obligation"
}

/// A purpose of processing declared in a store, with its lawful basis.
public struct PurposeDeclaration: Sendable, Codable, Equatable {
    /// The purpose's name, as access contexts give it.
    public let name: Purpose
    /// What the purpose is, for people.
    public let description: String
    /// Its legal ground.
    public let lawfulBasis: LawfulBasis
    /// For consent: whether a grant stays pending until the subject confirms it (double opt-in).
    public let requiresDoubleOptIn: Bool

    /// Declares a purpose.
    public init(name: Purpose, description: String, lawfulBasis: LawfulBasis, requiresDoubleOptIn: Bool = false) {
        self.name = name
        self.description = description
        self.lawfulBasis = lawfulBasis
        self.requiresDoubleOptIn = lawfulBasis == .consent && requiresDoubleOptIn
    }
}

extension PurposeDeclaration {
    /// The purposes every store declares when it is made, in this order: they rest on legitimate interest
    /// or legal obligation, so they need no consent; restriction still limits them. The one list of them
    /// (the schemas seed it: `Schema.builtInPurposes`).
    static let builtIns: [PurposeDeclaration] = [
        PurposeDeclaration(name: .callerID, description: "Identifying an incoming caller", lawfulBasis: .legitimateInterest),
        PurposeDeclaration(name: .admin, description: "Administration of the store: imports, exports, corrections",
                           lawfulBasis: .legitimateInterest),
        PurposeDeclaration(name: .subjectRequest, description: "Answering the data subject's own request", lawfulBasis: .legalObligation),
        PurposeDeclaration(name: .legalClaims, description: "Establishing, exercising or defending legal claims",
                           lawfulBasis: .legalObligation),
        PurposeDeclaration(name: .keyRotation, description: "Re-encrypting stored data under new keys", lawfulBasis: .legitimateInterest),
    ]
}

/// The store's purpose declarations as last read from the data database, and when they were read.
///
/// Reads check purposes against this copy, so a purpose on legitimate interest costs no query per read;
/// it is read again at most once per `Store.purposeRefreshInterval`, so a declaration made by another
/// process sharing the store takes effect here within that interval.
struct PurposeCache: Sendable {
    /// The declarations, by name.
    var declarations: [Purpose: PurposeDeclaration]
    /// When they were read.
    var loadedAt: ContinuousClock.Instant
}

extension Store {
    /// How stale the in-memory purpose declarations may grow before a read looks at the database again.
    static let purposeRefreshInterval: Duration = .seconds(1)

    /// Reads the store's purposes from the data database.
    static func loadPurposes(from connection: any Database) throws(DatabaseError) -> PurposeCache {
        PurposeCache(declarations: Dictionary(uniqueKeysWithValues: try connection.rows(
            "SELECT name, description, lawful_basis, double_opt_in FROM purposes") { row in
                let name = Purpose(rawValue: row.text(0) ?? "")
                return (name, PurposeDeclaration(name: name, description: row.text(1) ?? "",
                                                 lawfulBasis: LawfulBasis(rawValue: row.text(2) ?? "") ?? .consent,
                                                 requiresDoubleOptIn: row.int64(3) != 0))
            }), loadedAt: .now)
    }

    /// The declaration of `purpose`, nil when it is not declared. From memory (no query per read), read
    /// again from the database once the copy is older than `purposeRefreshInterval` and the data
    /// connection is free (never waiting for it, so this is safe to call with it held).
    func purposeDeclaration(_ purpose: Purpose) -> PurposeDeclaration? {
        let (declaration, stale) = purposeCache.withLock {
            ($0.declarations[purpose], ContinuousClock.now - $0.loadedAt > Store.purposeRefreshInterval)
        }
        guard stale else { return declaration }
        refreshPurposes()
        return purposeCache.withLock { $0.declarations[purpose] }
    }

    /// Reads the declarations again if the data connection is free; on failure keeps the current ones
    /// (a database error surfaces in the read that follows) and tries again after the interval.
    private func refreshPurposes() {
        let read: Result<PurposeCache, any Error>? = data.withLockIfAvailable { connection in
            Result { try Store.loadPurposes(from: connection) }
        }
        purposeCache.withLock { cache in
            switch read {
            case .success(let fresh): cache = fresh
            case .failure: cache.loadedAt = .now
            case nil: break // the connection is busy: the next read tries again
            }
        }
    }

    /// The purposes declared in the store, by name.
    public func purposes() -> [PurposeDeclaration] {
        refreshPurposes()
        return purposeCache.withLock { Array($0.declarations.values) }.sorted { $0.name.rawValue < $1.name.rawValue }
    }

    /// Declares (or redeclares) a purpose of processing. Audited.
    ///
    /// Once the consent ledger has an entry for a purpose, a re-declaration may only strengthen it or
    /// repeat it: moving its lawful basis away from consent would make every subject who withdrew (or
    /// never confirmed) readable again, and dropping double opt-in would turn pending grants into consent
    /// (Art. 7(1): the controller must be able to show each consent as given). Both are refused
    /// (`purposeWeakened`); a changed processing needs a new purpose, with consents of its own.
    public func declarePurpose(_ declaration: PurposeDeclaration, context: AccessContext) throws(StoreError) {
        guard !declaration.name.rawValue.isEmpty, declaration.name.rawValue.count <= 64 else {
            throw .invalidPurposeName(characters: declaration.name.rawValue.count, maxCharacters: 64)
        }
        // Storage under new keys, legal claims and the subject's own requests must go on whatever the
        // subject consented to (they are what restriction still allows): they cannot rest on consent.
        guard !(Purpose.allowedUnderRestriction.contains(declaration.name) && declaration.lawfulBasis == .consent) else {
            throw .builtInPurposeOnConsent(declaration.name)
        }
        try withDataTransaction { (connection) throws(StoreError) in
            let weakening: String?
            do throws(DatabaseError) {
                weakening = try Store.weakening(to: declaration, in: connection)
                if weakening == nil {
                    try connection.run("""
                        INSERT INTO purposes (name, description, lawful_basis, double_opt_in) VALUES (?, ?, ?, ?)
                        ON CONFLICT (name) DO UPDATE SET description = excluded.description,
                            lawful_basis = excluded.lawful_basis, double_opt_in = excluded.double_opt_in
                        """, [.text(declaration.name.rawValue), .text(declaration.description),
                              .text(declaration.lawfulBasis.rawValue), .int(declaration.requiresDoubleOptIn ? 1 : 0)])
                }
            } catch {
                throw .database(error)
            }
            if let weakening { throw .purposeWeakened(declaration.name, reason: weakening) }
            try audit([AuditEvent(.purpose, context, subject: nil,
                                  detail: "\(declaration.name) on \(declaration.lawfulBasis.rawValue)"
                                      + (declaration.requiresDoubleOptIn ? ", double opt-in" : ""))])
        }
        purposeCache.withLock { $0.declarations[declaration.name] = declaration }
    }

    /// How `declaration` would weaken the stored declaration of a purpose that has consent-ledger
    /// entries (read inside the declaring transaction, which then refuses it: `purposeWeakened`); nil
    /// when it would not.
    private static func weakening(to declaration: PurposeDeclaration, in connection: any Database) throws(DatabaseError) -> String? {
        guard let stored = try connection.firstRow("SELECT lawful_basis, double_opt_in FROM purposes WHERE name = ?",
                                                   [.text(declaration.name.rawValue)], {
                                                       (LawfulBasis(rawValue: $0.text(0) ?? ""), $0.int64(1) != 0)
                                                   }),
              try connection.scalarInteger("SELECT 1 FROM consent_ledger WHERE purpose = ? LIMIT 1",
                                           [.text(declaration.name.rawValue)]) != nil else { return nil }
        if stored.0 == .consent, declaration.lawfulBasis != .consent {
            return "its lawful basis would change from consent to \(declaration.lawfulBasis.rawValue)"
        }
        if stored.1, !declaration.requiresDoubleOptIn { return "double opt-in would be dropped" }
        return nil
    }
}
