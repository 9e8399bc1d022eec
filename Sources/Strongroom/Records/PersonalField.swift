/// A personal field of a subject, stored as its own ciphertext column.
public enum PersonalField: String, Sendable, CaseIterable, Codable, Comparable {
    /// Full name.
    case name
    /// Company.
    case company
    /// E-mail addresses.
    case emails
    /// Phone numbers.
    case phones
    /// Postal address.
    case address
    /// Notes.
    case notes
    /// Photo.
    case photo
    /// Custom fields.
    case customFields = "custom_fields"

    /// The ciphertext column in the `subjects` table. Also bound into each envelope's AAD.
    var column: String { "\(rawValue)_ct" }

    public static func < (lhs: PersonalField, rhs: PersonalField) -> Bool {
        lhs.ordinal < rhs.ordinal
    }

    private var ordinal: Int { PersonalField.allCases.firstIndex(of: self) ?? 0 }
}

extension Set where Element == PersonalField {
    /// Every personal field.
    public static var all: Set<PersonalField> { Set(PersonalField.allCases) }
}
