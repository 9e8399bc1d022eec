import Foundation
import StrongroomStorage

/// One change `Store.rectify` makes: a field, by its import column name (`name`, `company`, `email`,
/// `phone`, `mobile`, `work_phone`, `address`, `notes`, or a custom field the subject has), and its new
/// value; an empty value clears the field.
public struct FieldChange: Sendable, Hashable {
    /// The field's name.
    public let field: String
    /// The new value ("" clears).
    public let value: String

    /// A change of `field` to `value`.
    public init(field: String, value: String) {
        self.field = field
        self.value = value
    }
}

extension Store {
    /// The text field rectify sets directly for a column name, if it is one.
    private static func textField(_ column: String) -> WritableKeyPath<PersonalData, String?>? {
        switch column {
        case "name": return \.name
        case "company": return \.company
        case "address": return \.address
        case "notes": return \.notes
        default: return nil
        }
    }

    /// Rectifies a subject (GDPR Art. 16): changes only the fields named, keeps every other field,
    /// number and custom field, and re-indexes its phone numbers and e-mail addresses, in one write-path
    /// transaction (refused while processing is restricted, but for `subject-request` and
    /// `legal-claims`, as every update). Returns the names of the fields changed, in the order given;
    /// the audit entry names them too, never their values.
    ///
    /// A phone number must normalise (under `region`, default the store's) and an address must be one
    /// the e-mail index can key; a custom field must exist on the subject (a misspelt field name is
    /// refused rather than added). Errors never carry a value.
    @discardableResult
    public func rectify(_ id: SubjectID, _ changes: [FieldChange], region: String? = nil,
                        context: AccessContext) throws(StoreError) -> [String] {
        let normalizer = try normalizer(for: region)
        try check(changes, region: region)
        // The stored fields a change rewrites only in part: the numbers under other labels, the other custom fields.
        let fields = (changes.contains { CSVImporter.phoneColumns.map(\.0).contains($0.field) } ? [PersonalField.phones] : [])
            + (changes.contains(where: Store.isCustomField) ? [.customFields] : [])
        try writeSubjects(context: context) { (write) throws(StoreError) in
            let connection = write.connection
            _ = try keyring.reloadIfChanged()
            let row: EncryptedSubject?
            do throws(DatabaseError) {
                row = try connection.firstRow("SELECT \(Store.summaryColumns)\(fields.map { ", " + $0.column }.joined()) FROM subjects WHERE id = ?",
                                              [.integer(id.rawValue)], { Store.encryptedSubject(from: $0, fields: fields) })
            } catch {
                throw .database(error)
            }
            guard let stored = row else { throw try notFoundOrErased(id) }
            try write.require(id, .update)
            let current = fields.isEmpty ? PersonalData() : try decrypt([stored], fields: fields, detail: "rectify", context: context).personal[0]
            let personal = try Store.applying(changes, to: current)
            let written = try replace(id, keyVersion: stored.keyVersion, metadata: stored.summary.metadata, personal: personal,
                                      normalizer: normalizer, now: Store.milliseconds(Date()), in: connection).written
            write.record(id, .update, fields: written, detail: "rectify: " + changes.map(\.field).joined(separator: ", "))
        }
        return changes.map(\.field)
    }

    /// Refuses before anything is read: no change, a field named twice or not personal, a number that
    /// does not normalise, an address that is not one.
    private func check(_ changes: [FieldChange], region: String?) throws(StoreError) {
        guard !changes.isEmpty else { throw .noFieldsToRectify }
        var seen = Set<String>()
        for change in changes {
            guard !change.field.isEmpty else { throw .unknownField("") }
            guard seen.insert(change.field).inserted else { throw .fieldNamedTwice(change.field) }
            if CSVImporter.knownColumns.contains(change.field), !Store.personalColumns.contains(change.field) {
                throw .unknownField(change.field)
            }
            guard !change.value.isEmpty else { continue }
            if CSVImporter.phoneColumns.contains(where: { $0.0 == change.field }) {
                do { _ = try normalize(change.value, region: region) } catch .invalidPhoneNumber(let reason) {
                    throw .invalidPhoneNumber(reason: "\(change.field): \(reason)")
                }
            } else if change.field == "email" {
                do { _ = try EmailAddress(change.value) } catch {
                    throw .invalidEmailAddress(reason: error.reason)
                }
            }
        }
    }

    /// The import columns that are personal fields rectify changes.
    private static let personalColumns = Set(["name", "company", "email", "address", "notes"])
        .union(CSVImporter.phoneColumns.map(\.0))

    /// Whether a change names a custom field (any name that is not an import column).
    private static func isCustomField(_ change: FieldChange) -> Bool {
        !CSVImporter.knownColumns.contains(change.field)
    }

    /// The fields to write: each change applied to what is stored (`current` holds the phones and
    /// custom fields when a change needs them); fields not named stay nil, so they are kept.
    private static func applying(_ changes: [FieldChange], to current: PersonalData) throws(StoreError) -> PersonalData {
        var personal = PersonalData()
        for change in changes {
            let value = change.value
            if let path = textField(change.field) {
                personal[keyPath: path] = value
            } else if change.field == "email" {
                personal.emails = value.isEmpty ? [] : [value]
            } else if let label = CSVImporter.phoneColumns.first(where: { $0.0 == change.field })?.1 {
                var phones = personal.phones ?? current.phones ?? []
                let position = phones.firstIndex { $0.label == label } ?? phones.endIndex
                phones.removeAll { $0.label == label }
                if !value.isEmpty { phones.insert(LabeledPhone(label: label, number: value), at: min(position, phones.endIndex)) }
                personal.phones = phones
            } else {
                var fields = personal.customFields ?? current.customFields ?? [:]
                guard fields[change.field] != nil else {
                    throw .unknownField(change.field)
                }
                fields[change.field] = value.isEmpty ? nil : value
                personal.customFields = fields
            }
        }
        return personal
    }
}
