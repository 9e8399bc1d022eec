extension PersonalData {
    /// Refuses a text value longer than `limit` UTF-8 bytes (`StoreConfiguration.maxFieldBytes`): checked
    /// where every create and update seals its fields, so no write path stores an oversized value.
    /// - Throws: `StoreError.fieldTooLarge` naming the first such field, never its content.
    func checkValueSizes(limit: Int) throws(StoreError) {
        func check(_ value: String?, _ field: String) throws(StoreError) {
            guard let bytes = value?.utf8.count, bytes > limit else { return }
            throw .fieldTooLarge(field: field, bytes: bytes, limit: limit)
        }
        try check(name, PersonalField.name.rawValue)
        try check(company, PersonalField.company.rawValue)
        try check(address, PersonalField.address.rawValue)
        try check(notes, PersonalField.notes.rawValue)
        for email in emails ?? [] { try check(email, PersonalField.emails.rawValue) }
        for phone in phones ?? [] {
            try check(phone.label, PersonalField.phones.rawValue)
            try check(phone.number, PersonalField.phones.rawValue)
        }
        for (fieldName, value) in (customFields ?? [:]).sorted(by: { $0.key < $1.key }) {
            try check(fieldName, "custom field name")
            try check(value, "custom field \(fieldName)")
        }
    }
}
