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

extension Store {
    /// Reads the store's purposes from the data database.
    static func loadPurposes(from connection: Connection) throws -> [Purpose: PurposeDeclaration] {
        Dictionary(uniqueKeysWithValues: try connection.rows("SELECT name, description, lawful_basis, double_opt_in FROM purposes") { row in
            let name = Purpose(rawValue: row.text(0) ?? "")
            return (name, PurposeDeclaration(name: name, description: row.text(1) ?? "",
                                             lawfulBasis: LawfulBasis(rawValue: row.text(2) ?? "") ?? .consent,
                                             requiresDoubleOptIn: row.int64(3) != 0))
        })
    }

    /// The declaration of `purpose`, nil when it is not declared (from memory: no query per read).
    func purposeDeclaration(_ purpose: Purpose) -> PurposeDeclaration? {
        purposeCache.withLock { $0[purpose] }
    }

    /// The purposes declared in the store, by name.
    public func purposes() -> [PurposeDeclaration] {
        purposeCache.withLock { Array($0.values) }.sorted { $0.name.rawValue < $1.name.rawValue }
    }

    /// Declares (or redeclares) a purpose of processing. Audited.
    public func declarePurpose(_ declaration: PurposeDeclaration, context: AccessContext) throws(StoreError) {
        guard !declaration.name.rawValue.isEmpty, declaration.name.rawValue.count <= 64 else {
            throw .invalidInput("a purpose needs a name of 1 to 64 characters")
        }
        try storeErrors {
            try data.withLock { connection in
                try connection.transaction {
                    try connection.run("""
                        INSERT INTO purposes (name, description, lawful_basis, double_opt_in) VALUES (?, ?, ?, ?)
                        ON CONFLICT (name) DO UPDATE SET description = excluded.description,
                            lawful_basis = excluded.lawful_basis, double_opt_in = excluded.double_opt_in
                        """, [.text(declaration.name.rawValue), .text(declaration.description),
                              .text(declaration.lawfulBasis.rawValue), .int(declaration.requiresDoubleOptIn ? 1 : 0)])
                    try audit([AuditEvent(.purpose, context, subject: nil,
                                          detail: "\(declaration.name) on \(declaration.lawfulBasis.rawValue)"
                                              + (declaration.requiresDoubleOptIn ? ", double opt-in" : ""))])
                }
            }
        }
        purposeCache.withLock { $0[declaration.name] = declaration }
    }
}
